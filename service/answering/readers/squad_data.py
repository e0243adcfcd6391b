"""SQuAD-format question sets (SQuAD 1.1, SQuAD 2.0, NewsQA as shipped in ``../shared/data``) and their fixed splits.

The split is a pure function of the paragraph text, so training, tuning and evaluation agree on which questions
were never trained on, on any machine and across resumed runs:

- ``heldout``: the figures are measured here, never trained or tuned on;
- ``tune``: the no-answer threshold and the confidence calibration are chosen here, never trained on;
- ``train``: everything else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from index.errors import InvalidInput

__all__ = ["SPLIT_FRACTIONS", "SquadExample", "dataset_name", "load_squad", "split_of"]

Split = Literal["train", "tune", "heldout"]

# Fractions of paragraphs (heldout, tune) per data set. NewsQA has only 500 questions, so half is held out to
# keep its figure meaningful; the Wikipedia sets hold out a tenth (SQuAD 1.1) or a quarter (SQuAD 2.0 half).
SPLIT_FRACTIONS: dict[str, tuple[float, float]] = {
    "squad11": (0.10, 0.05),
    "squad2": (0.25, 0.10),
    "newsqa": (0.50, 0.10),
}
_DEFAULT_FRACTIONS = (0.10, 0.05)


class SquadExample(BaseModel):
    """One question over one paragraph; ``answers`` are (char offset, text) pairs, empty when unanswerable."""

    id: str
    dataset: str
    question: str
    context: str
    answers: list[tuple[int, str]]
    is_impossible: bool = False


def _bucket(context: str) -> float:
    digest = hashlib.sha1(context.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(dataset: str, context: str) -> Split:
    """The fixed split a paragraph belongs to."""
    heldout, tune = SPLIT_FRACTIONS.get(dataset, _DEFAULT_FRACTIONS)
    u = _bucket(context)
    if u < heldout:
        return "heldout"
    if u < heldout + tune:
        return "tune"
    return "train"


def dataset_name(path: Path) -> str:
    """``squad11`` / ``squad2`` / ``newsqa`` from a file or folder name, else the file stem."""
    name = str(path).lower()
    for key in ("newsqa", "squad2", "squad11"):
        if key in name:
            return key
    if "v2.0" in name:
        return "squad2"
    return path.stem


def load_squad(path: Path, splits: Iterable[Split] | None = None, dataset: str | None = None) -> list[SquadExample]:
    """Questions of a SQuAD v1.1/v2.0 JSON file, optionally only those of the given splits."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not a SQuAD-format JSON file ({exc})") from exc
    name = dataset or dataset_name(Path(path))
    wanted = set(splits) if splits is not None else None
    try:
        return [ex for article in raw["data"] for paragraph in article["paragraphs"]
                if wanted is None or split_of(name, paragraph["context"]) in wanted
                for ex in _questions(name, paragraph)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a SQuAD-format JSON file (no {exc} where expected)") from exc


def _questions(dataset: str, paragraph: dict[str, Any]) -> list[SquadExample]:
    context = paragraph["context"]
    examples = []
    for qa in paragraph["qas"]:
        answers = [(int(a["answer_start"]), a["text"]) for a in qa.get("answers", [])]
        examples.append(SquadExample(
            id=str(qa["id"]), dataset=dataset, question=qa["question"], context=context, answers=answers,
            is_impossible=bool(qa.get("is_impossible", False)) or not answers))
    return examples
