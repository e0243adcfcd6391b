"""Chat turns (JSON or server-sent events), stored conversations, and feedback on answers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from index.errors import QAError
from service.api.deps import ChatDep, FeedbackDep, ReaderDep, WriterDep
from service.api.errors import status_for
from service.api.observability import Metrics
from service.conversation.chat import ChatEvent
from service.schemas import (
    ChatRequest,
    ChatResponse,
    ConversationDetail,
    ConversationList,
    FeedbackRequest,
    FeedbackResponse,
)

MAX_OFFSET = 2**31  # beyond any archive; keeps the value inside SQLite's integer range
router = APIRouter(tags=["chat"])
logger = logging.getLogger(__name__)

_SSE_DOC = {"text/event-stream": {"schema": {"type": "string"}, "example":
                                  'event: resolved\ndata: {"conversation_id": "...", "resolved_question": "..."}\n\n'
                                  "event: passages\ndata: {...}\n\nevent: answer\ndata: {...}\n\n"
                                  'event: done\ndata: {"conversation_id": "...", "turn": 1}\n\n'}}


async def _stream(steps: Iterator[ChatEvent], metrics: Metrics) -> AsyncIterator[dict[str, str]]:
    """Each step as an SSE event; a failure after the stream started arrives as an ``error`` event."""
    try:
        async for step in iterate_in_threadpool(steps):
            if isinstance(step.data, ChatResponse):
                metrics.count_answer(step.data.abstained)
            yield {"event": step.event, "data": step.data.model_dump_json()}
    except QAError as exc:
        yield {"event": "error", "data": json.dumps({"status": status_for(exc), "detail": str(exc)})}
    except Exception:
        logger.exception("chat stream failed")
        yield {"event": "error", "data": json.dumps({"status": 500, "detail": "internal error while answering; "
                                                     "the service log has the details"})}


@router.post("/chat", response_model=ChatResponse, dependencies=[ReaderDep],
             responses={200: {"content": _SSE_DOC, "description": "The answer, or with `Accept: text/event-stream` "
                              "the events resolved, passages, answer and done (error on failure)."}})
async def chat(body: ChatRequest, chat: ChatDep, request: Request,
               accept: Annotated[str | None, Header()] = None) -> Response:
    """One chat turn: the follow-up is resolved against the conversation, then answered as /ask answers."""
    metrics: Metrics = request.app.state.metrics
    if accept is not None and "text/event-stream" in accept:
        steps = chat.events(body.conversation_id, body.message)  # checks the message before anything streams
        return EventSourceResponse(_stream(steps, metrics), ping=15)
    answer = await run_in_threadpool(chat.turn, body.conversation_id, body.message)
    metrics.count_answer(answer.abstained)
    return JSONResponse(answer.model_dump(mode="json"))


@router.get("/conversations", response_model=ConversationList, dependencies=[ReaderDep])
def list_conversations(chat: ChatDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                       offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> ConversationList:
    """Stored conversations, most recently updated first."""
    return chat.list(limit, offset)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail, dependencies=[ReaderDep])
def get_conversation(conversation_id: str, chat: ChatDep) -> ConversationDetail:
    """A conversation with every turn: message, resolved question and the answer shown."""
    return chat.get(conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[WriterDep])
def delete_conversation(conversation_id: str, chat: ChatDep) -> Response:
    """Delete a conversation and its turns."""
    chat.delete(conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/feedback", status_code=status.HTTP_201_CREATED, response_model=FeedbackResponse,
             dependencies=[ReaderDep])
def add_feedback(body: FeedbackRequest, feedback: FeedbackDep) -> FeedbackResponse:
    """Thumbs up or down on an answer, stored with its question and citations (export: newsroom-qa feedback)."""
    return feedback.add(body)
