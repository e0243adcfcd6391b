"""The official SQuAD v2.0 answer normalisation, exact match and token F1 (same rules as the published script).

Kept as a few plain functions rather than a dependency: the ``evaluate`` library fetches its metric scripts from
the hub at run time, which fails on an offline machine.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["exact_match", "f1_score", "holds_accepted", "normalize_answer", "score_prediction"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str) -> float:
    gold_toks = normalize_answer(gold).split()
    pred_toks = normalize_answer(prediction).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)  # both empty (a right abstention) = 1, else 0
    common = Counter(gold_toks) & Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def score_prediction(golds: Sequence[str], prediction: str) -> tuple[float, float]:
    """(EM, F1) of a prediction ("" = abstained) against all gold answers (none = unanswerable), max over golds."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match(g, prediction) for g in golds), max(f1_score(g, prediction) for g in golds)


def holds_accepted(answer: str | None, accepted: Sequence[str], extra_words: int = 4) -> bool:
    """The judgement of the seeds' development questions: ``answer`` holds one of ``accepted`` (case aside) and at
    most ``extra_words`` words that are in none of them; with nothing accepted (the seeds do not answer), right
    only when there is no answer."""
    if not accepted:
        return answer is None
    if answer is None:
        return False
    lowered = answer.lower()
    allowed = {w for a in accepted for w in a.lower().split()}
    return any(a.lower() in lowered for a in accepted) and sum(w not in allowed for w in lowered.split()) <= extra_words
