"""Turn a reader's raw answer margin into a probability that the answer is right, and pick the abstention point.

Platt scaling (a one-feature logistic regression, scikit-learn) fitted on the ``tune`` split: among answers given
confidence 0.8, about 80% were right there. "Right" means token F1 >= 0.5 against a gold answer; an answer to an
unanswerable question is wrong. The threshold is the confidence that maximised F1-with-abstention on that split.

Over an archive an answer is right less often than its margin says when articles retrieved above its own offer
answers of their own (the best spans of a question often come from different articles): the open calibration can
also take ``rank_weight * log(1 + rank)`` off, ``rank`` the answer's article's place among the retrieved articles
that offer an answer (a span reaching ``rank_margin``, the margin the calibration without the rank answers at),
fitted with the margin on what the service answered, its threshold held to abstain on at least as many
unanswerable tune questions as without the rank. Articles offering nothing do not count: a second article on the
same story, retrieved first but silent on the question, does not hold down the one that answers it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

__all__ = ["Calibration", "article_ranks", "best_threshold", "fit_calibration", "refit_open"]

CALIBRATION_FILE = "calibration.json"  # fitted with the gold paragraph given (``calibrate_model``)
OPEN_CALIBRATION_FILE = "calibration-open.json"  # refitted over an archive, as the service reads (``refit_open``)


class Calibration(BaseModel):
    """``confidence = sigmoid(slope * margin + intercept - rank_weight * log(1 + rank))``, ``rank`` the number of
    articles retrieved above the answer's with a span of margin ``rank_margin`` or more (``rank_of``); abstain below
    ``threshold``."""

    slope: float = 1.0
    intercept: float = 0.0
    rank_weight: float = 0.0
    rank_margin: float = 0.0
    threshold: float = 0.5
    fitted_on: str = "uncalibrated: sigmoid of the raw margin"

    def confidence(self, margin: float, rank: int = 0) -> float:
        z = self.slope * margin + self.intercept - self.rank_weight * math.log1p(rank)
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    def rank_of(self, above: Iterable[float]) -> int:
        """The answer's rank from the best confidence (its article's rank not weighed) of each article above its own:
        how many offer an answer."""
        return sum(self.margin(c) >= self.rank_margin for c in above)

    @classmethod
    def load(cls, model_dir: Path, setting: Literal["open", "gold"] = "gold") -> Calibration:
        """The model's calibration for ``setting``: "open" falls back to the gold one where none was refitted."""
        names = [OPEN_CALIBRATION_FILE, CALIBRATION_FILE] if setting == "open" else [CALIBRATION_FILE]
        for name in names:
            path = Path(model_dir) / name
            if path.is_file():
                return cls.model_validate_json(path.read_text(encoding="utf-8"))
        return cls()

    def save(self, model_dir: Path, setting: Literal["open", "gold"] = "gold") -> None:
        name = OPEN_CALIBRATION_FILE if setting == "open" else CALIBRATION_FILE
        (Path(model_dir) / name).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def margin(self, confidence: float) -> float:
        """The margin this calibration maps to ``confidence`` with no answering article above (rank 0; the inverse of
        ``confidence``)."""
        p = min(max(confidence, 1e-12), 1 - 1e-12)
        return (math.log(p / (1 - p)) - self.intercept) / self.slope


def article_ranks(doc_ids: Iterable[str]) -> dict[str, int]:
    """Each article's place among the retrieved passages' articles (``doc_ids`` best first; 0: the first)."""
    return {doc_id: i for i, doc_id in enumerate(dict.fromkeys(doc_ids))}


def fit_calibration(margins: Sequence[float], right: Sequence[bool], f1_if_answered: Sequence[float],
                    answerable: Sequence[bool], fitted_on: str, ranks: Sequence[int] | None = None) -> Calibration:
    """Fit the logistic map and choose the threshold that maximises mean F1 when abstaining below it.

    :param margins: the reader's best-answer margin per question.
    :param right: whether that answer was right (F1 >= 0.5).
    :param f1_if_answered: F1 of that answer (0 for unanswerable questions).
    :param answerable: whether the question has an answer (abstaining scores 1 when it has none).
    :param ranks: the answer's article rank among those retrieved: fitted with the margin as -log(1 + rank).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(margins, dtype=float).reshape(-1, 1)
    if ranks is not None:
        x = np.column_stack([x, -np.log1p(np.asarray(ranks, dtype=float))])
    y = np.asarray(right, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("calibration needs both right and wrong answers in the tune split")
    model = LogisticRegression(C=1e4).fit(x, y)
    calibration = Calibration(slope=float(model.coef_[0][0]), intercept=float(model.intercept_[0]),
                              rank_weight=round(float(model.coef_[0][1]), 4) if ranks is not None else 0.0,
                              fitted_on=fitted_on)
    calibration.threshold = best_threshold([calibration.confidence(m, r) for m, r in
                                            zip(margins, ranks or [0] * len(margins), strict=True)],
                                           f1_if_answered, answerable)
    return calibration


def best_threshold(confidences: Sequence[float], f1_if_answered: Sequence[float], answerable: Sequence[bool],
                   min_abstained: float = 0.0) -> float:
    """The confidence below which abstaining maximises mean F1 (abstaining scores 1 on an unanswerable question),
    among those abstaining on at least ``min_abstained`` of the unanswerable questions."""
    import numpy as np

    conf = np.asarray(confidences, dtype=float)
    f1 = np.asarray(f1_if_answered, dtype=float)
    abstain_score = np.array([0.0 if a else 1.0 for a in answerable])
    best_t, best_f1 = 0.0, -1.0
    for t in np.linspace(0.0, 0.95, 96):
        if _abstained(confidences, float(t), answerable) < min_abstained - 1e-9:
            continue
        mean_f1 = float(np.where(conf >= t, f1, abstain_score).mean())
        if mean_f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), mean_f1
    return round(best_t, 3)


def _abstained(confidences: Sequence[float], threshold: float, answerable: Sequence[bool]) -> float:
    """Share of the unanswerable questions abstained on at ``threshold`` (0 when there are none)."""
    held = [c < threshold for c, a in zip(confidences, answerable, strict=True) if not a]
    return sum(held) / len(held) if held else 0.0


def refit_open(base: Calibration, confidences: Sequence[float | None], f1_if_answered: Sequence[float],
               answerable: Sequence[bool], fitted_on: str,
               above: Sequence[Sequence[float] | None] | None = None) -> Calibration:
    """Refit ``base`` on what the service answers over an archive: per question, the confidence ``base`` gave the
    answer the service would give with no threshold (None where it abstained for another reason: nothing
    retrieved, a name the article lacks), and that answer's F1. The margins are recovered from ``base`` and fitted
    again; the threshold is the one that maximises mean F1 with abstention over all the questions.

    :param above: per answer, the confidence ``base`` gave the best span of each article retrieved above the
        answer's (None or empty: none, or a reading the rank does not weigh). When given, an article counts toward
        the answer's rank if its span reaches the margin the fit without the rank answers at, the margin and the
        rank are fitted together, and the threshold must abstain on as many unanswerable questions as without them.
    """
    margins = [base.margin(c) if c is not None else None for c in confidences]
    answered = [i for i, c in enumerate(confidences) if c is not None]
    calibration = fit_calibration([m for m in margins if m is not None],
                                  [f1_if_answered[i] >= 0.5 for i in answered], [f1_if_answered[i] for i in answered],
                                  [answerable[i] for i in answered], fitted_on=fitted_on)
    # never answered (-1): abstained for another reason, whatever the threshold
    confidences_now = [calibration.confidence(m) if m is not None else -1.0 for m in margins]
    calibration.threshold = best_threshold(confidences_now, f1_if_answered, answerable)
    if above is None:
        return calibration
    floor = _abstained(confidences_now, calibration.threshold, answerable)
    answering = round(calibration.margin(calibration.threshold), 4)
    ranks = [sum(base.margin(c) >= answering for c in a or []) for a in above]
    ranked = fit_calibration([m for m in margins if m is not None], [f1_if_answered[i] >= 0.5 for i in answered],
                             [f1_if_answered[i] for i in answered], [answerable[i] for i in answered],
                             fitted_on=fitted_on, ranks=[ranks[i] for i in answered])
    ranked.rank_margin = answering
    ranked.threshold = best_threshold([ranked.confidence(m, r) if m is not None else -1.0
                                       for m, r in zip(margins, ranks, strict=True)],
                                      f1_if_answered, answerable, min_abstained=floor)
    return ranked
