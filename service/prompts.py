"""Loads the text the product shows and the question patterns it matches from ``prompts/`` at start-up."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr

from index.errors import QAError
from index.pipeline.cleaning import DebrisRules, load_debris_rules

__all__ = ["Prompts", "QuestionType", "load_prompts", "load_toml"]


class QuestionType(BaseModel):
    """Which answers fit a kind of question."""

    name: str
    pattern: str
    labels: list[str]
    noun_ok: bool
    clause_ok: bool
    focus: str | None = None  # a pattern whose group "focus" is the thing asked about ("prison director")
    span_pattern: str | None = None  # a span matching this fits the type whatever the entity recogniser says
    strict: bool | None = None  # the transformer reader keeps only spans of ``labels`` (unset: when not noun_ok)
    verb_core: bool = False  # the answer is an action: the verb with what it governs, not the clause after it

    _regex: re.Pattern[str] = PrivateAttr()
    _focus: re.Pattern[str] | None = PrivateAttr(default=None)
    _span: re.Pattern[str] | None = PrivateAttr(default=None)

    def model_post_init(self, __context: object) -> None:
        self._regex = re.compile(self.pattern, re.IGNORECASE)
        self._focus = re.compile(self.focus, re.IGNORECASE) if self.focus else None
        self._span = re.compile(self.span_pattern, re.IGNORECASE) if self.span_pattern else None

    def span_matches(self, span: str) -> bool:
        """True if the span's own words show the type (``span_pattern``)."""
        return self._span is not None and self._span.search(span) is not None

    def focus_word(self, question: str) -> str | None:
        """The last word of what the question asks about ("director" in "the name of the prison director")."""
        found = self._focus.search(question.lower()) if self._focus is not None else None
        words = found.group("focus").split() if found else []
        return words[-1] if words else None

    def matches(self, question: str) -> bool:
        return self._regex.search(question.lower()) is not None


class Templates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cli: dict[str, str]
    http: dict[str, str]
    errors: dict[str, str]
    slack: dict[str, str]


class Prompts(BaseModel):
    """Everything loaded from ``prompts/``."""

    templates: Templates
    question_types: list[QuestionType]
    debris: DebrisRules

    def question_type(self, question: str) -> QuestionType:
        """The first question type whose pattern matches (the last one matches anything)."""
        return next((t for t in self.question_types if t.matches(question)), self.question_types[-1])


def load_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise QAError(f"{path} is missing; the prompts directory must hold the project's templates") from exc
    except tomllib.TOMLDecodeError as exc:
        raise QAError(f"{path} is not valid TOML: {exc}") from exc


def load_prompts(prompts_dir: Path) -> Prompts:
    """Read ``templates.toml``, ``question_types.toml`` and ``debris.toml`` from ``prompts_dir``."""
    templates = Templates.model_validate(load_toml(prompts_dir / "templates.toml"))
    types = load_toml(prompts_dir / "question_types.toml")["types"]
    return Prompts(templates=templates, question_types=types,
                   debris=load_debris_rules(prompts_dir / "debris.toml"))
