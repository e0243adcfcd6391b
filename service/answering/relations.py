"""Relational questions: "Astana is the capital of which country?" answered from "Kazakhstan's capital, Astana".

The question names a subject and a relational noun (capital, chief executive, lead guitarist); the answer is what
that noun ties the subject to. Articles say it with a possessor ("Kazakhstan's capital, Astana"), a preposition
("Astana, the capital of Kazakhstan") or a copula ("The capital of Kazakhstan is Astana"); the dependency parse shows
all three the same way. The small span reader misreads them (it answers "Turkey" from "... support from Iran and
Turkey during talks in Kazakhstan's capital, Astana"), so for questions of these forms the parse finds the answer
and the reader's spans are kept only where the parse finds nothing. The forms, dependency labels and the confidence
given to such an answer (measured, not chosen) are data: ``prompts/relations.toml``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, PrivateAttr
from spacy.lang.en.stop_words import STOP_WORDS

from service.answering.readers.base import AnswerCandidate
from service.prompts import load_toml

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Span, Token

__all__ = ["RelationRules", "Relations", "load_relation_rules"]

_WORD = re.compile(r"[\w\u2019'-]+")


class RelationRules(BaseModel):
    """``prompts/relations.toml``."""

    question_patterns: list[str]
    links: list[str]
    copula_roles: list[str]
    possessor: str
    prepositions: list[str]
    confidence: float

    _patterns: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    def model_post_init(self, __context: object) -> None:
        self._patterns = [re.compile(p, re.IGNORECASE) for p in self.question_patterns]

    def asked(self, question: str) -> tuple[set[str], str] | None:
        """The subject's content words and the relational noun, if the question asks for a relation."""
        for pattern in self._patterns:
            found = pattern.match(question.strip())
            if found:
                subject = {w.lower() for w in _WORD.findall(found.group("subject"))} - STOP_WORDS
                relation = found.group("relation").split()
                if subject and relation:
                    return subject, relation[-1].lower()
        return None


class Relations:
    """Finds the answer to a relational question in the sentences the reader was given, by their parse."""

    def __init__(self, nlp: Language, rules: RelationRules) -> None:
        self.nlp = nlp
        self.rules = rules

    def asks(self, question: str) -> bool:
        return self.rules.asked(question) is not None

    def answer(self, question: str, sentences: Iterable[tuple[str, int, str]],
               labels: list[str] | None = None) -> AnswerCandidate | None:
        """The first of ``sentences`` (doc id, start offset, text; best first) that ties the question's subject to
        its relational noun, and what it ties it to. ``labels``: entity labels the answer must carry (the question's
        type), None for any noun phrase. The answer carries the confidence measured for such answers."""
        asked = self.rules.asked(question)
        if asked is None:
            return None
        subject, noun = asked
        for doc_id, offset, text in sentences:
            lowered = text.lower()
            if noun not in lowered or not any(w in lowered for w in subject):
                continue  # cheap test before parsing
            found = self._in_sentence(self.nlp(text)[:], subject, noun, labels)
            if found is not None:
                start, end = found
                return AnswerCandidate(doc_id=doc_id, answer=text[start:end], answer_start=offset + start,
                                       answer_end=offset + end, sentence_start=offset,
                                       sentence_end=offset + len(text), confidence=self.rules.confidence)
        return None

    def _in_sentence(self, sent: Span, subject: set[str], noun: str,
                     labels: list[str] | None) -> tuple[int, int] | None:
        subjects = [t for t in sent if t.lower_ in subject]
        for r in sent:
            if noun not in (r.lower_, r.lemma_.lower()) or not any(self._linked(r, x) for x in subjects):
                continue
            related = self._related(r)
            if related is None or any(t.lower_ in subject for t in related[0]):
                continue
            edges = self._typed(sent, *related, labels)
            if edges is not None:
                return edges
        return None

    def _linked(self, noun: Token, subject: Token) -> bool:
        """Is the relational noun in apposition to, compounded with or equated to the subject?"""
        links = self.rules.links
        if (subject.head == noun and subject.dep_ in links) or (noun.head == subject and noun.dep_ in links):
            return True
        roles = self.rules.copula_roles
        return (noun.head == subject.head and noun.head.lemma_ == "be" and noun.dep_ in roles
                and subject.dep_ in roles and noun.dep_ != subject.dep_)

    def _related(self, noun: Token) -> tuple[list[Token], Token] | None:
        """What the noun relates to, with the word heading it: its possessor ("Kazakhstan's"), else the noun phrase
        after its preposition ("the capital of Kazakhstan")."""
        for child in noun.children:
            if child.dep_ == self.rules.possessor:
                return [t for t in child.subtree if t.dep_ != "case"], child
        for child in noun.children:
            if child.dep_ == "prep" and child.lower_ in self.rules.prepositions:
                for obj in child.children:
                    if obj.dep_ == "pobj":
                        chunk = next((c for c in obj.doc.noun_chunks if c.start <= obj.i < c.end), None)
                        return (list(chunk) if chunk is not None else [obj]), obj
        return None

    @staticmethod
    def _typed(sent: Span, answer: list[Token], head: Token, labels: list[str] | None) -> tuple[int, int] | None:
        """Character edges of the answer in the sentence: the whole phrase for an untyped question, else the entity
        of the asked-for type that holds the phrase's head word (None if there is none: in "the capital of
        Kazakhstan's neighbour" the answer is the neighbour, not Kazakhstan)."""
        base = sent.start_char
        if labels is None:
            return answer[0].idx - base, answer[-1].idx + len(answer[-1].text) - base
        entity = next((e for e in sent.ents if e.label_ in labels and e.start <= head.i < e.end), None)
        if entity is None:
            return None
        return entity.start_char - base, entity.end_char - base


def load_relation_rules(path: Path) -> RelationRules:
    """Read ``relations.toml``."""
    return RelationRules.model_validate(load_toml(path))
