"""Search and ask: the read side of the API."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import QADep, ReaderDep
from service.schemas import AnswerResponse, AskRequest, SearchRequest, SearchResponse

router = APIRouter(tags=["answers"], dependencies=[ReaderDep])


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, qa: QADep) -> SearchResponse:
    """Return the stored passages most relevant to a query, with their article metadata and offsets."""
    return qa.search(body.query, body.top_k, body.filters, body.recency, body.explain)


@router.post("/ask", response_model=AnswerResponse)
def ask(body: AskRequest, qa: QADep, request: Request) -> AnswerResponse:
    """Answer a question with a short span quoted from an article, cited to the character, or abstain."""
    answer = qa.ask(body.question, body.top_k, body.filters, body.recency)
    request.app.state.metrics.count_answer(answer.abstained)
    return answer
