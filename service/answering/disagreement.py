"""Do the sources agree? Two articles giving a different number, name or date for the same question.

Plain functions over the reader's answers: the best answer and each other article's best answer. Only answers
confident enough to be given on their own count, and only answers of the same kind (numbers with numbers, names
with names) can disagree; "5,000 to 11,000" vs "5,000 to 13,000" does, "Amnesty" vs "the Amnesty report" does not.
"""

from __future__ import annotations

import re

from spacy.lang.en.stop_words import STOP_WORDS

from service.answering.readers.base import AnswerCandidate
from service.answering.readers.squad_metrics import normalize_answer

__all__ = ["answer_kind", "content_words", "differing_answers", "same_claim"]

_NUMBER = re.compile(r"\d")
_WORD = re.compile(r"[^\W\d_]+")


def answer_kind(answer: str) -> str:
    """``number`` (has a digit), ``name`` (every word capitalised) or ``other``."""
    if _NUMBER.search(answer):
        return "number"
    words = _WORD.findall(answer)
    if words and all(w[0].isupper() for w in words if len(w) > 3 or w[0].isupper()):
        return "name"
    return "other"


def _numbers(answer: str) -> list[str]:
    return re.findall(r"\d[\d,.]*", answer)


def differ(a: str, b: str) -> bool:
    """True when two answers of the same kind say different things (not one a part of the other)."""
    kind = answer_kind(a)
    if kind == "other" or kind != answer_kind(b):
        return False
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb or na in nb or nb in na:
        return False
    if kind == "number":
        return _numbers(a) != _numbers(b)
    return True


_REPORTING = {"said", "says", "say", "told", "tells", "reported", "reports", "according", "added", "stated"}


def content_words(sentence: str) -> set[str]:
    """The words of a sentence that say what it reports: not stop words, not reporting verbs."""
    return {w for w in normalize_answer(sentence).split() if w not in STOP_WORDS and w not in _REPORTING}


def same_claim(a: str, b: str, min_shared: int = 3, min_share: float = 0.3) -> bool:
    """True when two sentences report the same thing: they share ``min_shared`` content words and ``min_share`` of
    the shorter one's ("Amnesty International ... between 5,000 and 11,000 ... 2011 and 2015" and "Amnesty
    International ... between 5,000 and 13,000 ... 2011 and 2015"), not two claims that each name someone."""
    words_a, words_b = content_words(a), content_words(b)
    shared = len(words_a & words_b)
    return shared >= min_shared and shared >= min_share * min(len(words_a), len(words_b))


def differing_answers(best: AnswerCandidate, others: list[AnswerCandidate], min_confidence: float
                      ) -> list[AnswerCandidate]:
    """Other articles' answers that contradict the best one, each confident enough to stand alone."""
    return [o for o in others if o.doc_id != best.doc_id and o.confidence >= min_confidence
            and differ(best.answer, o.answer)]
