"""Is the answer's article about what the question names? A guard against fluent answers to other questions.

An extractive model asked "What is the capital of France?" over an article saying "Ostrava Point is the capital
of the Marren province" answers "Marren province" with some confidence: the sentence fits the question's shape.
The names a question uses (proper nouns: France, Jupiter, Saydnaya) must appear in the answer's article, allowing
spelling variants (Sednaya) and small typos; otherwise the service abstains.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rapidfuzz import fuzz, process

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["Grounding"]

_WORD = re.compile(r"\w+")
_NAME_ENTS = {"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "PRODUCT", "WORK_OF_ART", "LAW"}


class Grounding:
    """Finds the names of a question that an article does not mention."""

    def __init__(self, nlp: Language, min_similarity: float = 75.0) -> None:
        self.nlp = nlp
        self.min_similarity = min_similarity

    def names(self, question: str) -> list[str]:
        """Lower-cased proper-noun words of the question (entities and PROPN tokens, 3+ letters)."""
        doc = self.nlp(question)
        words = {t.lower_ for t in doc if t.pos_ == "PROPN" and t.i > 0 and t.is_alpha}
        words |= {t.lower_ for e in doc.ents if e.label_ in _NAME_ENTS for t in e if t.is_alpha and not t.is_stop}
        return sorted(w for w in words if len(w) >= 3)

    def missing(self, question: str, text: str) -> list[str]:
        """Question names absent from ``text``, even as a close spelling variant with the same first letter."""
        names = self.names(question)
        if not names:
            return []
        vocabulary = {w.lower() for w in _WORD.findall(text)}
        absent = []
        for name in names:
            if name in vocabulary:
                continue
            choices = [w for w in vocabulary if w[:1] == name[:1]]
            # short names need a closer match: "peru" is not a variant of "pier"
            cutoff = max(self.min_similarity, 85.0) if len(name) <= 5 else self.min_similarity
            if process.extractOne(name, choices, scorer=fuzz.ratio, score_cutoff=cutoff) is None:
                absent.append(name)
        return absent
