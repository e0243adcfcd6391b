"""Stance questions ("Who doubted the claim?"): which retrieved sentences express the stance the question asks about.

An extractive reader matches a question's words; doubt and criticism are reported in other words ("the photographs
are not conclusive", "we have reason to be sceptical"). For such a question the reader reads only the sentences
that carry a cue of the stance; the cues are data (``prompts/stances.toml``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, PrivateAttr

from service.prompts import load_toml

__all__ = ["Stance", "StanceCues", "load_stances"]


class Stance(BaseModel):
    """One stance: the questions that ask about it and the words that express it."""

    name: str
    question_pattern: str
    cues: list[str]

    _question: re.Pattern[str] = PrivateAttr()
    _cues: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    def model_post_init(self, __context: object) -> None:
        self._question = re.compile(self.question_pattern, re.IGNORECASE)
        self._cues = [re.compile(c, re.IGNORECASE) for c in self.cues]

    def asked_by(self, question: str) -> bool:
        return self._question.search(question) is not None

    def expressed_in(self, sentence: str) -> bool:
        return any(c.search(sentence) for c in self._cues)


class StanceCues(BaseModel):
    """The stances of ``prompts/stances.toml``."""

    stances: list[Stance]

    def stance_of(self, question: str) -> Stance | None:
        """The first stance the question asks about, if any."""
        return next((s for s in self.stances if s.asked_by(question)), None)


def load_stances(path: Path) -> StanceCues:
    """Read ``stances.toml``."""
    return StanceCues.model_validate(load_toml(path))
