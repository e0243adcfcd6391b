"""Turns raw article text into the clean text that is stored, chunked and cited.

Cleaning happens once, before anything is stored: every offset and quote refers to the cleaned text, so a
citation can always be checked with ``document.text[start:end] == quote``.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, PrivateAttr

__all__ = ["DebrisRules", "clean_text", "headline", "load_debris_rules"]

# Control characters other than newline and tab carry no meaning in an article and break terminals and JSON.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200e\u200f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


class DebrisRules(BaseModel):
    """Which lines of a web page are navigation, credits or captions rather than article text."""

    boilerplate_lines: list[str]
    boilerplate_patterns: list[str]
    repeated_paragraph_max_chars: int = 400
    pattern_max_chars: int = 160

    _lines: set[str] = PrivateAttr(default_factory=set)
    _patterns: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    def line_is_debris(self, line: str) -> bool:
        """True if ``line`` (already stripped) matches a boilerplate line or pattern."""
        lowered = line.casefold()
        if lowered in self._lines:
            return True
        return len(line) <= self.pattern_max_chars and any(p.fullmatch(line) for p in self._patterns)

    def model_post_init(self, __context: object) -> None:
        self._lines = {s.casefold() for s in self.boilerplate_lines}
        self._patterns = [re.compile(p, re.IGNORECASE) for p in self.boilerplate_patterns]


def load_debris_rules(path: Path) -> DebrisRules:
    """Read the cleaning rules from a TOML file (``prompts/debris.toml``)."""
    with path.open("rb") as fh:
        return DebrisRules.model_validate(tomllib.load(fh))


def _normalise_line(line: str) -> str:
    return _SPACES.sub(" ", line).strip()


def clean_text(raw: str, rules: DebrisRules) -> str:
    """Normalise whitespace and Unicode and drop web-page debris.

    Paragraphs are separated by one blank line in the result; lines inside a paragraph are kept.

    :param raw: the text as extracted from a file or request.
    :param rules: which lines count as debris.
    :returns: the cleaned text (may be empty if nothing but debris was given).
    """
    text = unicodedata.normalize("NFC", raw.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    lines = [_normalise_line(line) for line in text.split("\n")]

    # A short line present more than once is a caption or pull quote shown twice: drop every copy.
    repeats = Counter(line for line in lines if line and len(line) <= rules.repeated_paragraph_max_chars)

    # Group lines into paragraphs (blank line = break), dropping debris lines as we go.
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if not line:
            if paragraphs[-1]:
                paragraphs.append([])
        elif repeats.get(line, 0) < 2 and not rules.line_is_debris(line):
            paragraphs[-1].append(line)
    return "\n\n".join("\n".join(p) for p in paragraphs if p)


def headline(cleaned: str, max_chars: int = 300) -> str | None:
    """The first line of cleaned text, as a title: a scraped page opens with navigation, then its headline, and the
    cleaner has taken the navigation away. None if that line is too short or too long to be a headline."""
    first = cleaned.split("\n", 1)[0].strip()
    return first if 3 <= len(first) <= max_chars else None
