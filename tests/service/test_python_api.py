"""The embeddable Python API: ``Newsroom.open`` and the example of docs/cli-and-python.md, for real."""

from __future__ import annotations

import pytest

from index.errors import DocumentNotFound, InvalidInput
from index.models import DocumentIn
from service.newsroom import Newsroom
from service.schemas import AnswerResponse, ChatResponse, FeedbackRequest, SearchResponse
from tests.conftest import FIXTURE_ARTICLES

pytestmark = pytest.mark.integration


def test_the_readme_example(tmp_path):
    newsroom = Newsroom.open(data_dir=tmp_path / "archive", seeds_dir=FIXTURE_ARTICLES)
    assert newsroom.list_documents().total == 2  # an empty data dir starts with the seeds
    newsroom.add_documents([DocumentIn(id="dam-2024", title="Dam opens", source="Wire", published="2024-05-01",
                                       text="The Kessel dam opened on Friday. Mayor Ana Ruiz cut the ribbon.")])
    answer = newsroom.ask("Who cut the ribbon?")
    assert isinstance(answer, AnswerResponse) and answer.answer is not None and "Ana Ruiz" in answer.answer
    quote = answer.citations[0]
    assert newsroom.get_document(quote.doc_id).text[quote.start:quote.end] == quote.quote
    hits = newsroom.search("dam opening", top_k=3)
    assert isinstance(hits, SearchResponse) and hits.results[0].doc_id == "dam-2024"
    turn = newsroom.chat(None, "When did the Kessel dam open?")
    assert isinstance(turn, ChatResponse) and turn.answer == "Friday"
    more = newsroom.chat(turn.conversation_id, "Who cut its ribbon?")
    # "its" is replaced from the first turn (spaCy's small parser reads "Kessel dam open" loosely, so only "Kessel"
    # is certain to be in the mention).
    assert more.resolved_question.startswith("Who cut the Kessel") and " its " not in more.resolved_question
    assert more.turn == 2
    rated = newsroom.rate(FeedbackRequest(rating="up", question=turn.resolved_question, answer=turn.answer,
                                          citations=turn.citations))
    assert rated.id >= 1
    with pytest.raises(InvalidInput):
        newsroom.ask("")
    newsroom.delete_documents(["dam-2024"])
    with pytest.raises(DocumentNotFound):
        newsroom.get_document("dam-2024")
