"""An answer to "What did X urge Y to do?" is the action, without the clause that follows it (service/answer_core)."""

from __future__ import annotations

import pytest

from service.answering.answer_core import AnswerCore

URGED = "The minister urged the council to publish every report within a week to restore trust in the board."
ASKED = "Residents asked the mayor to close the old bridge and open a ferry service until repairs are done."


def _cut(core: AnswerCore, question: str, sentence: str, answer: str) -> str:
    start = sentence.index(answer)
    return sentence[start:core.end(question, sentence, start, start + len(answer))]


@pytest.mark.parametrize(("question", "sentence", "answer", "core"), [
    ("What did the minister urge the council to do?", URGED,
     "publish every report within a week to restore trust in the board", "publish every report within a week"),
    ("What did residents ask the mayor to do?", ASKED,
     "close the old bridge and open a ferry service until repairs are done", "close the old bridge"),
])
def test_an_action_ends_before_the_clause_that_follows_it(nlp, prompts, question, sentence, answer, core):  # type: ignore[no-untyped-def]
    assert _cut(AnswerCore(nlp, prompts), question, sentence, answer) == core


@pytest.mark.parametrize(("question", "answer"), [
    # another kind of question: the span is the reader's
    ("What did the minister say?", "publish every report within a week to restore trust in the board"),
    # short: nothing to cut
    ("What did the minister urge the council to do?", "publish every report within a week"),
    # not headed by a verb
    ("What did the minister urge the council to do?", "the council to publish every report within a week"),
])
def test_other_answers_are_left_as_they_are(nlp, prompts, question, answer):  # type: ignore[no-untyped-def]
    assert _cut(AnswerCore(nlp, prompts), question, URGED, answer) == answer


SKEPTICAL = '"In light of the failures of the past cease-fire agreements, we have reason to be skeptical," Mo said.'
FLOODS = '"After the floods of the past winters, we have no time to lose," Brandt said.'


@pytest.mark.parametrize(("question", "sentence", "quote", "statement"), [
    ("What did Mo say about the past cease-fire agreements?", SKEPTICAL,
     "In light of the failures of the past cease-fire agreements, we have reason to be skeptical",
     "we have reason to be skeptical"),
    ("What did Brandt say about the floods?", FLOODS, "After the floods of the past winters, we have no time to lose",
     "we have no time to lose"),
    # the opening phrase is not what the question asks about: it is part of the answer
    ("What did Brandt say about the repairs?", FLOODS, "After the floods of the past winters, we have no time to lose",
     "After the floods of the past winters, we have no time to lose"),
])
def test_a_statement_starts_after_an_opening_that_restates_the_question(  # type: ignore[no-untyped-def]
        nlp, prompts, question, sentence, quote, statement):
    start = sentence.index(quote)
    assert sentence[AnswerCore(nlp, prompts).start(question, sentence, start, start + len(quote)):
                    start + len(quote)] == statement
