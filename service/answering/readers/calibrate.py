"""Fit a reader's calibration on the ``tune`` split of SQuAD-format files (gold paragraphs, model alone)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from service.answering.readers.calibration import Calibration, fit_calibration
from service.answering.readers.span_model import SpanModel
from service.answering.readers.squad_data import SquadExample, load_squad
from service.answering.readers.squad_metrics import score_prediction

__all__ = ["calibrate_model"]


def calibrate_model(model: SpanModel, files: Sequence[Path],
                    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it) -> Calibration:
    """Platt-scale the model's answer margin on the tune split and pick the abstention threshold there."""
    examples: list[SquadExample] = [ex for f in files for ex in load_squad(f, ["tune"])]
    margins, right, f1s, answerable = [], [], [], []
    for ex in progress(examples):
        preds = model.predict(ex.question, [ex.context], top_n=1)
        golds = [] if ex.is_impossible else [t for _, t in ex.answers]
        guess = ex.context[preds[0].start:preds[0].end] if preds else ""
        f1 = score_prediction(golds, guess)[1] if golds and guess else 0.0
        margins.append(preds[0].margin if preds else -50.0)
        right.append(f1 >= 0.5)
        f1s.append(f1)
        answerable.append(bool(golds))
    names = ", ".join(Path(f).name for f in files)
    return fit_calibration(margins, right, f1s, answerable, fitted_on=f"tune split of {names} ({len(examples)} q)")
