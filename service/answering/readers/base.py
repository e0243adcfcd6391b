"""What every reader returns, and the one interface the answering service calls."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pydantic import BaseModel

from index.archive import ArchiveSnapshot as Snapshot
from index.models import Passage

__all__ = ["AnswerCandidate", "CandidateSentence", "ReadResult", "Reader"]


class CandidateSentence(BaseModel):
    """A sentence of a stored document that may answer the question."""

    doc_id: str
    start: int
    end: int
    text: str  # the sentence, == document.text[start:end]
    score: float
    coverage: float = 0.0
    similarity: float = 0.0


class AnswerCandidate(BaseModel):
    """One answer span with its supporting sentence, as offsets into the stored document."""

    doc_id: str
    answer: str
    answer_start: int
    answer_end: int
    sentence_start: int
    sentence_end: int
    confidence: float


class ReadResult(BaseModel):
    """The reader's verdict: an answer span with its supporting sentence, or an abstention."""

    answer: str | None
    confidence: float
    doc_id: str | None = None
    answer_start: int | None = None
    answer_end: int | None = None
    sentence_start: int | None = None
    sentence_end: int | None = None
    sentences: list[CandidateSentence]  # every candidate, best first: corroboration and nearest evidence
    # The best answer of each other document, best first (for "sources differ"); empty for readers that cannot tell.
    alternatives: list[AnswerCandidate] = []
    # The top candidate even when it was withheld (for evaluation and calibration); None if the reader had none. Its
    # confidence, as the alternatives', is that it is what its own article says: no article rank weighed in.
    best_guess: AnswerCandidate | None = None
    # When ``confidence`` weighs the articles retrieved above the answer's: the best confidence (no rank weighed) the
    # reader found in each (0: none); None when it does not weigh them (a speaker's or stance reading, a parse).
    ranked_above: list[float] | None = None


class Reader(Protocol):
    """Reads retrieved passages and returns an answer span quoted from a stored article, or abstains."""

    name: str

    def run(self, question: str, passages: list[Passage], snapshot: Snapshot,
            question_vector: np.ndarray | None = None) -> ReadResult: ...
