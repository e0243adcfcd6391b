"""Answering on a scraped page that is not a seed: glued sentences, a bracket typo, stance and typed questions.

The mechanisms the seeds need (tests/test_seeds.py) shown on a fictional page (tests/fixtures/scraped/): spans of
the type the question asks for, doubt reported in other words, a role the article never names, citations that stay
one sentence where sentences are glued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import build_service, make_settings

SCRAPED = Path(__file__).resolve().parents[1] / "fixtures" / "scraped"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    return build_service(make_settings(tmp_path_factory.mktemp("scraped"), seeds_dir=SCRAPED), embedder, nlp,
                         prompts)


def _quoted_exactly(service, response) -> None:  # type: ignore[no-untyped-def]
    for c in response.citations:
        assert service.get_document(c.doc_id).text[c.start:c.end] == c.quote


def test_a_glued_sentence_is_cited_alone(scraped):
    r = scraped.ask("Who is the mayor of Kellmoor?")
    assert r.answer == "Oskar Brandt"
    assert r.supporting_sentence == ("\u201cWe will not wait for the spring floods,\u201d said Oskar Brandt, "
                                     "the mayor of Kellmoor.")
    _quoted_exactly(scraped, r)


def test_a_bracket_typo_does_not_break_the_speaker(scraped):
    r = scraped.ask("Who said the board must publish every report?")
    assert r.answer == "Lena Kask"
    assert r.supporting_sentence is not None and r.supporting_sentence.startswith("\"The [board) must publish")
    _quoted_exactly(scraped, r)


def test_doubt_reported_in_other_words_is_found(scraped):
    r = scraped.ask("Who doubted the inspection photographs?")
    assert not r.abstained and "union" in (r.answer or "")
    assert r.supporting_sentence is not None and "not conclusive" in r.supporting_sentence


def test_a_sum_answers_a_cost_question_even_where_the_entity_recogniser_misses_it(scraped):
    r = scraped.ask("How much will the repairs cost?")
    assert r.answer is not None and "million euros" in r.answer


@pytest.mark.parametrize("question", [
    "What is the name of the dam's director?",  # a role the page never names: the engineer is not the answer
    "How many turbines does the dam have?",  # no figure of that kind
    "Who designed the spillway?",  # names are there, but no sentence says who designed anything
])
def test_questions_the_page_does_not_answer_abstain_with_passages(scraped, question):
    r = scraped.ask(question)
    assert r.abstained and r.answer is None and r.citations == []
    assert r.passages


def test_the_role_that_is_named_is_answered(scraped):
    assert scraped.ask("What is the name of the chief engineer?").answer == "Ingrid Halvorsen"


@pytest.mark.parametrize("question, said", [
    ("What did Lena Kask say?", "The [board) must publish every report"),
    ("What did Oskar Brandt say about the floods?", "We will not wait for the spring floods"),
    ("What did Ingrid Halvorsen say about the cracks?", "The cracks do not threaten the dam today"),
    # the quotation opens by restating what the question asks about: the answer is what follows
    ("What did Mats Ek say about the state of the spillway?", "we cannot promise water for the summer"),
])
def test_what_a_named_person_said_is_their_quotation(scraped, question, said):
    r = scraped.ask(question)
    assert r.answer == said
    doc = scraped.get_document(r.citations[0].doc_id)
    assert doc.text[r.answer_start:r.answer_end] == said


def test_a_who_question_is_answered_where_its_action_is_reported(scraped):
    r = scraped.ask("Who ordered the emergency repairs?")
    assert r.answer is not None and "water board" in r.answer
    assert r.supporting_sentence is not None and "ordered" in r.supporting_sentence


def test_missing_action_checks_the_verb_of_who_questions_only(nlp):
    from service.answering.grounding import Grounding, GroundingRules

    grounding = Grounding(nlp, GroundingRules(exempt_verbs=["say", "have"]))
    sentence = "The water board has ordered repairs, said Ingrid Halvorsen, the board's chief engineer."
    assert grounding.missing_action("Who designed the spillway?", sentence) == "design"
    assert grounding.missing_action("Who ordered the repairs?", sentence) is None
    assert grounding.missing_action("Who said the cracks were small?", sentence) is None  # exempt
    assert grounding.missing_action("What did the board order?", sentence) is None  # not a who-question
    assert grounding.missing_action("Who designed it?", "The designer, Ana Ruiz, said so.") is None  # same stem


def test_an_action_is_answered_without_its_purpose_clause(scraped):
    response = scraped.ask("What did Brandt call on the regional government to do?")
    assert not response.abstained and response.answer is not None
    assert response.answer.startswith("pay for the repairs")
    assert "spare" not in response.answer and "spare farmers" in response.supporting_sentence
    _quoted_exactly(scraped, response)
