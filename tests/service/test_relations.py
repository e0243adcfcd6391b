"""Relational questions ("Quito is the capital of which country?") answered from the parse of the read sentences.

The span reader misreads "Ecuador's capital, Quito" after a list of other countries; the parse finds the possessor,
the object of "of" or the other side of a copula (service/answering/relations.py, prompts/relations.toml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.answering.relations import Relations, load_relation_rules
from service.answering.span_types import SpanTypes
from tests.conftest import build_service, make_settings

RULES = Path(__file__).resolve().parents[2] / "prompts" / "relations.toml"
COUNTRY = ["GPE", "NORP"]


@pytest.fixture(scope="module")
def relations(nlp) -> Relations:  # type: ignore[no-untyped-def]
    return Relations(nlp, load_relation_rules(RULES))


def _answer(relations: Relations, question: str, *sentences: str, labels: list[str] | None = COUNTRY) -> str | None:
    offset, rows = 0, []
    for s in sentences:
        rows.append(("doc", offset, s))
        offset += len(s) + 1
    found = relations.answer(question, rows, labels)
    if found is None:
        return None
    text = " ".join(sentences)
    assert text[found.answer_start:found.answer_end] == found.answer  # offsets into the article
    assert text[found.sentence_start:found.sentence_end] in sentences
    return found.answer


@pytest.mark.parametrize("sentence", [
    "The deal was brokered by Brazil with support from Chile and Peru during talks in Ecuador's capital, Quito.",
    "Delegates met in Quito, the capital of Ecuador, on Tuesday.",
    "The capital of Ecuador is Quito, where the talks were held.",
    "Quito is the capital of Ecuador and its second-largest city.",
])
def test_each_way_of_saying_the_relation_is_found(relations: Relations, sentence: str) -> None:
    assert _answer(relations, "Quito is the capital of which country?", sentence) == "Ecuador"
    assert _answer(relations, "Which country is Quito the capital of?", sentence) == "Ecuador"


def test_an_untyped_relation_answers_with_the_noun_phrase(relations: Relations) -> None:
    sentence = "Mira Olsen, the chief executive of the Harbour Shipping Company, resigned on Monday."
    assert _answer(relations, "Mira Olsen is the chief executive of which company?", sentence,
                   labels=None) == "the Harbour Shipping Company"


def test_no_answer_without_the_syntactic_link(relations: Relations) -> None:
    # Both words are there, but the subject is not the relational noun's apposition or copula partner.
    assert _answer(relations, "Quito is the capital of which country?",
                   "Officials in Quito said the capital of Peru had sent no delegation.") is None
    # The right link, but the answer is not of the asked-for type.
    assert _answer(relations, "Quito is the capital of which country?",
                   "Quito, the capital of commerce, grew fast.") is None
    # The country named is not what the capital belongs to.
    assert _answer(relations, "Quito is the capital of which country?",
                   "Quito, the capital of Ecuador's ally, hosted the talks.") is None
    # Not a relational question at all.
    assert _answer(relations, "Who visited Quito, the capital of Ecuador?",
                   "Quito, the capital of Ecuador, was visited by Ana Ruiz.") is None


def test_the_first_sentence_that_ties_them_answers(relations: Relations) -> None:
    assert _answer(relations, "Quito is the capital of which country?",
                   "Quito hosted the talks.", "It is the capital of Ecuador.",
                   "Talks in Ecuador's capital, Quito, ended.") == "Ecuador"


def test_span_types_give_the_labels(nlp, prompts) -> None:  # type: ignore[no-untyped-def]
    required = SpanTypes(nlp, prompts).required("Quito is the capital of which country?")
    assert required is not None and set(required.labels) == set(COUNTRY)


PAGE = """Skip to content

Andean Ministers Agree On Water Sharing Plan

Ministers from five countries agreed on Friday to share water from three rivers, officials said.The agreement was \
brokered by Brazil with support from Chile and Peru during talks in Ecuador's capital, Quito, last week.

Farmers' groups said the plan came too late for this year's harvest.
"""


@pytest.fixture(scope="module")
def andean(tmp_path_factory, embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    pages = tmp_path_factory.mktemp("andean-pages")
    (pages / "andean-water.txt").write_text(PAGE, encoding="utf-8")
    return build_service(make_settings(tmp_path_factory.mktemp("andean"), seeds_dir=pages), embedder, nlp, prompts)


@pytest.mark.integration
def test_the_service_answers_a_relational_question_on_a_scraped_page(andean) -> None:  # type: ignore[no-untyped-def]
    r = andean.ask("Quito is the capital of which country?")
    assert not r.abstained and r.answer == "Ecuador", r
    assert r.supporting_sentence is not None and "Ecuador's capital, Quito" in r.supporting_sentence
    doc = andean.get_document(r.citations[0].doc_id)
    assert doc.text[r.answer_start:r.answer_end] == "Ecuador"
    for c in r.citations:
        assert doc.text[c.start:c.end] == c.quote
