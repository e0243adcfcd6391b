"""Answering on the fixture articles with the real models: spans, citations, abstention."""

from __future__ import annotations

import pytest

from index.errors import InvalidInput
from index.models import Filters
from service.schemas import AnswerResponse

pytestmark = pytest.mark.integration


def assert_citations_verbatim(service, response: AnswerResponse) -> None:
    """The product's invariant: every quote is the exact slice of the stored article."""
    for c in response.citations:
        assert service.get_document(c.doc_id).text[c.start:c.end] == c.quote
    for p in response.passages:
        assert service.get_document(p.doc_id).text[p.start:p.end] == p.text


@pytest.mark.parametrize(("question", "expected", "doc_id"), [
    # the Trust is the sentence's subject; its analyst Lindqvist is named inside the same phrase
    ("Who doubted the pipeline claim?", ("Marren Water Trust", "Lindqvist"), "002_harbour-doubts"),
    ("Who said the authority had reached a new low?", "Clara Voss", "001_harbour-report"),
    ("In which month did the Fishermen's Guild report the fall in catches?", "March", "001_harbour-report"),
    ("What did Voss call on the shareholders to do?", "independent inspection", "001_harbour-report"),
    ("Who is the mayor of Vellmont?", "Peter Amsel", "002_harbour-doubts"),
    ("Which organisation doubted the pipeline claim?", "Marren Water Trust", "002_harbour-doubts"),
])
def test_answers_are_short_spans_of_the_cited_sentence(service, question, expected, doc_id):
    r = service.ask(question)
    assert not r.abstained and r.answer is not None
    assert any(e in r.answer for e in ((expected,) if isinstance(expected, str) else expected))
    assert len(r.answer) < 80
    first = r.citations[0]
    assert first.doc_id == doc_id and first.quote == r.supporting_sentence
    assert r.answer in r.supporting_sentence
    assert 0.0 < r.confidence <= 1.0
    assert_citations_verbatim(service, r)


@pytest.mark.parametrize("question", [
    "What is the name of the harbour authority director?",
    "How many pipelines has the mayor built in Ostrava Point?",
    "What is the capital of France?",
])
def test_abstains_when_the_articles_do_not_answer(service, question):
    r = service.ask(question)
    assert r.abstained and r.answer is None and r.supporting_sentence is None and r.citations == []
    assert r.passages, "the nearest passages are still returned"
    assert r.message.startswith("Not in the archive")
    assert_citations_verbatim(service, r)


def test_citation_carries_article_metadata(service):
    c = service.ask("Who doubted the pipeline claim?").citations[0]
    assert (c.title, c.source, str(c.published), c.url) == (
        "Environmental groups question harbour dumping claim", "Marren Daily (fictional)", "2024-03-13",
        "https://example.org/marren-daily/harbour-doubts")


def test_filters_restrict_what_is_read(service):
    r = service.ask("Who doubted the pipeline claim?", filters=Filters(doc_ids=["001_harbour-report"]))
    assert {p.doc_id for p in r.passages} == {"001_harbour-report"}
    assert all(c.doc_id == "001_harbour-report" for c in r.citations)
    none = service.search("pipeline", filters=Filters(sources=["No Such Outlet"]))
    assert none.results == []


def test_search_returns_passages_with_offsets_and_scores(service):
    results = service.search("aerial photographs of the pipeline", top_k=3).results
    assert 1 <= len(results) <= 3
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        assert service.get_document(r.doc_id).text[r.start:r.end] == r.text
        assert r.title and r.chunk_id.startswith(r.doc_id + "#")


@pytest.mark.parametrize(("question", "message"), [
    ("", "question is empty"), ("   \n\t", "question is empty"), ("x" * 100_000, "100000 characters"),
])
def test_bad_questions_are_refused(service, question, message):
    with pytest.raises(InvalidInput, match=message):
        service.ask(question)


def test_top_k_out_of_range_is_refused(service):
    with pytest.raises(InvalidInput, match="top_k must be between 1 and 50; got 0"):
        service.ask("Who doubted the pipeline claim?", top_k=0)
