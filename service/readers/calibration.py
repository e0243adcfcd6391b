"""Turn a reader's raw answer margin into a probability that the answer is right, and pick the abstention point.

Platt scaling (a one-feature logistic regression, scikit-learn) fitted on the ``tune`` split: among answers given
confidence 0.8, about 80% were right there. "Right" means token F1 >= 0.5 against a gold answer; an answer to an
unanswerable question is wrong. The threshold is the confidence that maximised F1-with-abstention on that split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

__all__ = ["Calibration", "fit_calibration"]

CALIBRATION_FILE = "calibration.json"


class Calibration(BaseModel):
    """``confidence = sigmoid(slope * margin + intercept)``; abstain below ``threshold``."""

    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = 0.5
    fitted_on: str = "uncalibrated: sigmoid of the raw margin"

    def confidence(self, margin: float) -> float:
        z = self.slope * margin + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    @classmethod
    def load(cls, model_dir: Path) -> Calibration:
        path = Path(model_dir) / CALIBRATION_FILE
        if path.is_file():
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        return cls()

    def save(self, model_dir: Path) -> None:
        (Path(model_dir) / CALIBRATION_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def fit_calibration(margins: Sequence[float], right: Sequence[bool], f1_if_answered: Sequence[float],
                    answerable: Sequence[bool], fitted_on: str) -> Calibration:
    """Fit the logistic map and choose the threshold that maximises mean F1 when abstaining below it.

    :param margins: the reader's best-answer margin per question.
    :param right: whether that answer was right (F1 >= 0.5).
    :param f1_if_answered: F1 of that answer (0 for unanswerable questions).
    :param answerable: whether the question has an answer (abstaining scores 1 when it has none).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(margins, dtype=float).reshape(-1, 1)
    y = np.asarray(right, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("calibration needs both right and wrong answers in the tune split")
    model = LogisticRegression(C=1e4).fit(x, y)
    calibration = Calibration(slope=float(model.coef_[0][0]), intercept=float(model.intercept_[0]),
                              fitted_on=fitted_on)
    conf = np.array([calibration.confidence(m) for m in margins])
    f1 = np.asarray(f1_if_answered, dtype=float)
    abstain_score = np.array([0.0 if a else 1.0 for a in answerable])
    best_t, best_f1 = 0.0, -1.0
    for t in np.linspace(0.0, 0.95, 96):
        mean_f1 = float(np.where(conf >= t, f1, abstain_score).mean())
        if mean_f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), mean_f1
    calibration.threshold = round(best_t, 3)
    return calibration

