"""Does an answer span have the type its question asks for? A who-question answers with a name, how-many with a
number, when with a date.

The reader ranks spans by how well they fit the sentence around them, not by what kind of thing they are: asked
"How many crematoriums were built?" over a page without that figure, it offers "Bodies of Detainees". Question
types (``prompts/question_types.toml``) whose ``noun_ok`` is false name the entity labels an answer must carry;
a span passes if an entity of one of those labels covers most of it. Spans of other question types all pass.
A type may also name the role asked about (``focus``: "the name of the prison *director*"); an article that never
mentions it cannot say who holds it, whoever else it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from index.models import Document
from service.answering.grounding import mentions, word_set
from service.answering.readers.base import AnswerCandidate
from service.prompts import Prompts, QuestionType

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

__all__ = ["SpanTypes"]


class SpanTypes:
    """Keeps the candidate spans whose entity type fits the question (entities from spaCy, per sentence)."""

    def __init__(self, nlp: Language, prompts: Prompts, max_extra_words: int = 2) -> None:
        """:param max_extra_words: words of a span outside its entity (articles and punctuation aside) it may
            carry: "between 5,000 and 13,000 people" fits a how-many question, a clause holding a number does not."""
        self.nlp = nlp
        self.prompts = prompts
        self.max_extra_words = max_extra_words

    def required(self, question: str) -> QuestionType | None:
        """The question's type if it constrains the answer's entity label, else None."""
        qtype = self.prompts.question_type(question)
        strict = qtype.strict if qtype.strict is not None else not qtype.noun_ok
        return qtype if qtype.labels and strict else None

    def select(self, question: str, candidates: list[AnswerCandidate],
               documents: dict[str, Document]) -> list[tuple[int, AnswerCandidate]]:
        """The candidates that fit the question's type, with their place in ``candidates``, in order (all of them
        for unconstrained types).

        A long span holding an entity of the type ("5,000 and 13,000 people were secretly hanged between ...") is
        narrowed to that entity: the reader found the right place, not the right edges.
        """
        asked = self.prompts.question_type(question)
        focus = asked.focus_word(question)
        if focus is not None:
            named = {d: mentions(word_set(documents[d].text), focus) for d in {c.doc_id for c in candidates}}
        else:
            named = {}
        indexed = [(i, c) for i, c in enumerate(candidates) if named.get(c.doc_id, True)]
        qtype = self.required(question)
        if qtype is None:
            return indexed
        parsed: dict[tuple[str, int], Doc] = {}
        kept = []
        for i, c in indexed:
            if qtype.span_matches(c.answer):
                kept.append((i, c))
                continue
            key = (c.doc_id, c.sentence_start)
            if key not in parsed:
                parsed[key] = self.nlp(documents[c.doc_id].text[c.sentence_start:c.sentence_end])
            edges = self.fit(parsed[key], c.answer_start - c.sentence_start, c.answer_end - c.sentence_start,
                             qtype.labels)
            if edges is not None:
                start, end = c.sentence_start + edges[0], c.sentence_start + edges[1]
                kept.append((i, c.model_copy(update={"answer": documents[c.doc_id].text[start:end],
                                                     "answer_start": start, "answer_end": end})))
        return kept

    def fit(self, sentence: Doc, start: int, end: int, labels: list[str]) -> tuple[int, int] | None:
        """Where the answer is in ``sentence[start:end]`` (character offsets): the span itself if an entity labelled
        with one of ``labels`` (in order of preference) lies in it and its other words are few; in a longer span, its
        one entity of the first label found; None otherwise."""
        entities = [e for e in sentence.ents if e.label_ in labels and e.start_char < end and e.end_char > start]
        if not entities:
            return None
        entity_tokens = {t.i for e in entities for t in e}
        span = [t for t in sentence if t.idx < end and t.idx + len(t.text) > start]
        extra = [t for t in span if t.i not in entity_tokens and not (t.is_punct or t.pos_ in ("DET", "CCONJ"))]
        if len(extra) <= self.max_extra_words:
            return start, end
        # Narrowed to the one entity of the first label found ("between 5,000 and 13,000" before "between 2011 and
        # 2015" for how many); "Russia with support from Iran and Turkey": which of them is meant is not known.
        first = next(label for label in labels if any(e.label_ == label for e in entities))
        of_first = [e for e in entities if e.label_ == first]
        if len(of_first) > 1:
            return None
        return max(start, of_first[0].start_char), min(end, of_first[0].end_char)

