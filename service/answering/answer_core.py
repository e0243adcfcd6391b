"""The core of a long answer: the action without the clause that follows it; the statement without the topic.

Asked "What did the minister urge the council to do?", the reader quotes the whole complement: "publish every report
within a week to restore trust in the board". The journalist's answer is its first part ("publish every report within
a week"); the purpose or follow-on clause ("to restore ...", "and ...", ", which ...") stays in the supporting
sentence that is quoted beside the answer. Only answers to questions of a type asking for an action
(``verb_core`` in ``prompts/question_types.toml``), headed by a verb and longer than ``min_words``, are cut, at the
first clausal dependent of their head (spaCy's parse), and only if enough words are left. Cutting every long verb
phrase whatever the question was measured on held-out SQuAD 1.1 and NewsQA: F1 -0.1 and -0.05 (their "what"
answers are often whole clauses), hence the question type.

Asked "What did the mayor say about the floods?", the quotation "After the floods of the past winters, we have no
time to lose" opens by restating the question's topic; the answer is what follows the comma (``start``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.answering.disagreement import content_words
from service.prompts import Prompts

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Span

__all__ = ["AnswerCore"]

# Dependents of a verb that start a clause of their own (purpose, result, a second predicate).
CLAUSAL = frozenset({"advcl", "xcomp", "conj", "ccomp", "parataxis"})
# Dependents that can open a statement before its subject ("In light of ..., we ...", "Given ..., they ...").
FRONTED = frozenset({"prep", "advcl", "advmod", "npadvmod", "pobj"})


class AnswerCore:
    """Cuts an action answer before the clause that follows its verb (``end``), and a statement after an opening
    that restates the question's topic (``start``). Parses a sentence only when the cheap checks leave a cut to
    make."""

    def __init__(self, nlp: Language, prompts: Prompts, min_words: int = 8, min_left: int = 3) -> None:
        """:param min_words: spans of at most this many words are left alone.
        :param min_left: a cut must leave at least this many words."""
        self.nlp = nlp
        self.prompts = prompts
        self.min_words = min_words
        self.min_left = min_left

    def end(self, question: str, sentence: str, start: int, end: int) -> int:
        """Where the answer ``sentence[start:end]`` should end (character offset into ``sentence``)."""
        if not self.prompts.question_type(question).verb_core or len(sentence[start:end].split()) <= self.min_words:
            return end
        span = self._parse(sentence, start, end)
        return (self._core_end(span) if span is not None else None) or end

    def _parse(self, sentence: str, start: int, end: int) -> Span | None:
        """``sentence[start:end]`` as a span of the parsed sentence (None if it does not align with tokens)."""
        return self.nlp(sentence).char_span(start, end, alignment_mode="expand")

    def _core_end(self, span: Span) -> int | None:
        root = span.root
        if root.pos_ not in ("VERB", "AUX"):
            return None
        clauses = [c for c in root.children if c.dep_ in CLAUSAL and c.i > root.i and c.left_edge.i >= span.start
                   and c.i < span.end]
        if not clauses:
            return None
        cut = min(c.left_edge.i for c in clauses)
        while cut > span.start and (span.doc[cut - 1].is_punct or span.doc[cut - 1].dep_ == "cc"):
            cut -= 1
        kept = [t for t in span.doc[span.start:cut] if not t.is_punct]
        if len(kept) < self.min_left:
            return None
        last = span.doc[cut - 1]
        return last.idx + len(last.text)

    def start(self, question: str, sentence: str, start: int, end: int) -> int:
        """Where a statement ``sentence[start:end]`` should start: after an opening phrase set off by a comma that
        restates what the question asks about (a content word of the question in it), before the subject."""
        asked = content_words(question)
        text = sentence[start:end]
        if "," not in text or not content_words(text[:text.rindex(",")]) & asked:
            return start  # no opening phrase that restates the question: nothing to parse for
        span = self._parse(sentence, start, end)
        if span is None:
            return start
        root = span.root
        subject = next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass", "expl")), None)
        if subject is None or subject.left_edge.i <= span.start:
            return start
        doc = span.doc
        opening = [c for c in root.children if c.dep_ in FRONTED and c.i < subject.i and c.left_edge.i == span.start]
        restated = content_words(doc[span.start:subject.left_edge.i].text)
        kept = [t for t in doc[subject.left_edge.i:span.end] if not t.is_punct]
        if not opening or doc[subject.left_edge.i - 1].text != "," or not (restated & asked) \
                or len(kept) < self.min_left:
            return start
        return subject.left_edge.idx
