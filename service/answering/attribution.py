"""Who said it: the speaker of a supporting sentence, for "who said ..." questions and quotes.

A span reader asked "Who said there still needs to be a lot of research done?" often returns a phrase of the
quote itself; the answer a journalist wants is the person the reporting verb (said, told, according to) names.
Patterns and verbs live in ``prompts/attribution.toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pydantic import BaseModel, Field

from index.models import Sentence

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span, Token

__all__ = ["AttributionRules", "Attributor", "Speaker", "load_attribution_rules"]

_SUBJECT_DEPS = {"nsubj", "nsubjpass"}
_SPEAKING_ENTITIES = ("PERSON", "ORG", "NORP", "GPE")
_PRONOUNS = {"he", "she", "they", "i", "we"}
_WORDS = re.compile(r"[a-z0-9']+")
_QUESTION_WORDS = {"who", "whom", "said", "says", "say", "told", "tell", "according", "to", "the", "a", "an", "is",
                   "was", "that", "there", "of", "be", "and", "in", "on", "it"}
_QUOTED = re.compile(r'"[^"]*"|\u201c[^\u201d]*\u201d|\u201c[^\u201d]*$|^[^\u201c]*\u201d')


class Speaker(NamedTuple):
    """Who said it (``text[start:end]``: a name), and how the reporting sentence calls them (``mention``: the
    name itself, or "he", "The Assistant Secretary"). ``named``: the speaker is a named person, organisation or
    group, not a phrase such as "the song" or "it" (a subject the parse took for a speaker)."""

    start: int
    end: int
    mention_start: int
    mention_end: int
    named: bool = False


class AttributionRules(BaseModel):
    question_patterns: list[str]
    reporting_verbs: list[str]
    statement_patterns: list[str] = []
    # how often a named speaker of the sentence quoting the question is the answer (measured; 0: never trusted alone)
    named_speaker_confidence: float = Field(default=0.0, ge=0.0, le=1.0)


def load_attribution_rules(path: Path) -> AttributionRules:
    with path.open("rb") as fh:
        return AttributionRules.model_validate(tomllib.load(fh))


class Attributor:
    """Finds the speaker of a sentence of a stored article, as exact offsets into the article."""

    def __init__(self, nlp: Language, rules: AttributionRules) -> None:
        self.nlp = nlp
        self.named_speaker_confidence = rules.named_speaker_confidence
        self._questions = [re.compile(p, re.IGNORECASE) for p in rules.question_patterns]
        self._verbs = set(rules.reporting_verbs)
        self._statements = [re.compile(p, re.IGNORECASE) for p in rules.statement_patterns]

    def asks_for_speaker(self, question: str) -> bool:
        return any(p.search(question) for p in self._questions)

    def person_asked_about(self, question: str) -> list[str]:
        """The name words of the person whose words the question asks for ("What did Geoffrey Mock of Amnesty say
        ...?" -> ["geoffrey", "mock"]): capitalised words before any "of", "from", "at"; none for other questions."""
        for pattern in self._statements:
            found = pattern.search(question)
            if found:
                name = re.split(r"\s(?:of|from|at|in|for|with)\s", found.group("person"))[0]
                return [w.lower() for w in re.findall(r"\b[A-Z][\w'\u2019-]+", name) if len(w) >= 3]
        return []

    def spoken_by(self, text: str, sentences: list[Sentence], index: int, names: list[str]) -> bool:
        """True if sentence ``index`` of ``text`` is said by someone with one of ``names`` (pronouns resolved)."""
        s = sentences[index]
        found = self.speaker(text, sentences, s.start, s.end)
        return found is not None and any(n in text[found.start:found.end].lower().split() for n in names)

    @staticmethod
    def quotation(text: str, start: int, end: int, min_words: int = 3, max_words: int = 60) -> tuple[int, int] | None:
        """The longest quotation inside ``text[start:end]`` (a sentence), without its marks and closing comma, if
        it has ``min_words`` to ``max_words`` words: what a person said, for "What did X say?"."""
        found = [(start + m.start(), start + m.end()) for m in _QUOTED.finditer(text[start:end])]
        if not found:
            return None
        a, b = max(found, key=lambda r: r[1] - r[0])
        a += 1 if text[a] in "\"\u201c" else 0
        b -= 1 if text[b - 1] in "\"\u201d" else 0
        while b > a and text[b - 1] in ",;: ":
            b -= 1
        return (a, b) if min_words <= len(text[a:b].split()) <= max_words else None

    def quoted_sentence(self, question: str, sentences: list[tuple[str, int, str]],
                        min_overlap: float = 0.5) -> tuple[str, int, int] | None:
        """The (doc_id, start, end) of the sentence that best contains the question's words, if it holds at least
        ``min_overlap`` of them: for "Who said there is still a lot to test?" the sentence quoting it."""
        wanted = {w for w in _WORDS.findall(question.lower()) if w not in _QUESTION_WORDS}
        if not wanted:
            return None
        best, best_overlap = None, min_overlap
        for doc_id, start, text in sentences:
            overlap = len(wanted & set(_WORDS.findall(text.lower()))) / len(wanted)
            if overlap > best_overlap or (best is None and overlap == min_overlap):  # "at least"
                best, best_overlap = (doc_id, start, start + len(text)), overlap
        return best

    def speaker(self, text: str, sentences: list[Sentence], sentence_start: int, sentence_end: int
                ) -> Speaker | None:
        """The speaker of ``text[sentence_start:sentence_end]`` (or of the quote it continues), or None.

        Looks in the sentence, then the next one ('"...," she said.' often follows the quote), then the one before.
        """
        order = [i for i, s in enumerate(sentences) if s.start < sentence_end and s.end > sentence_start]
        if not order:
            return None
        first, last = order[0], order[-1]
        candidates = [*order, last + 1, first - 1]
        for i in candidates:
            if not 0 <= i < len(sentences):
                continue
            s = sentences[i]
            doc = self.nlp(text[s.start:s.end])
            found = self._speaker_in(doc)
            if found is None:
                continue
            mention = (s.start + found[0], s.start + found[1])
            phrase = text[mention[0]:mention[1]]
            # a pronoun's antecedent and a title's holder are people the parse named
            person = self._antecedent(text, sentences, i) if phrase.lower() in _PRONOUNS \
                else self._titled_person(text, sentences, i, phrase)
            if person is None and phrase.lower() in _PRONOUNS:
                return None
            start, end = person or mention
            named = person is not None or _is_named(doc, found[0], found[1])
            return Speaker(start=start, end=end, mention_start=mention[0], mention_end=mention[1], named=named)
        return None

    def _titled_person(self, text: str, sentences: list[Sentence], index: int, phrase: str) -> tuple[int, int] | None:
        """The person an article introduced with the title a speaker is later called by ("The Assistant Secretary
        said" -> "Stuart Jones, the Acting Assistant Secretary of State, said" earlier): the last person named at or
        before sentence ``index`` with the title's last word after the name. None if the phrase is not a title."""
        words = phrase.split()
        if len(words) < 2 or words[0].lower() != "the" or not words[-1][:1].isupper():
            return None
        title = words[-1]
        for i in range(index, -1, -1):
            s = sentences[i]
            sentence = text[s.start:s.end]
            for ent in reversed([e for e in self.nlp(sentence).ents if e.label_ == "PERSON"]):
                after = sentence[ent.end_char:].lstrip()
                apposition = after[1:].split(",")[0][:80] if after.startswith(",") else ""
                if title in apposition.split():
                    return s.start + ent.start_char, s.start + ent.end_char
        return None

    # --- internals -------------------------------------------------------------------------------------
    def _speaker_in(self, doc: Doc) -> tuple[int, int] | None:
        """Subject of the first reporting verb outside quotation marks, or the object of "according to"."""
        quoted = [(m.start(), m.end()) for m in _QUOTED.finditer(doc.text)]
        for token in doc:
            if any(a <= token.idx < b for a, b in quoted):
                continue  # "... before anyone can say ...," Lindqvist said: the verb inside the quote is not it
            if token.lower_ == "according" and token.i + 1 < len(doc) and doc[token.i + 1].lower_ == "to":
                objects = [c for c in doc[token.i + 1].children if c.dep_ == "pobj"]
                if objects:
                    return self._name_span(doc, objects[0])
            if token.lemma_.lower() in self._verbs and token.pos_ in ("VERB", "AUX"):
                subjects = [c for c in token.children if c.dep_ in _SUBJECT_DEPS]
                if subjects:
                    return self._name_span(doc, subjects[0])
        return None

    @staticmethod
    def _name_span(doc: Doc, head: Token) -> tuple[int, int]:
        """The named entity around the subject's head if there is one ("Geoffrey Mock"), else the subject phrase."""
        for ent in doc.ents:
            if ent.start <= head.i < ent.end and ent.label_ in _SPEAKING_ENTITIES:
                return ent.start_char, ent.end_char
        subtree: Span = doc[head.left_edge.i:head.right_edge.i + 1]
        # Keep the core phrase: drop a trailing apposition or clause after a comma ("Mock, a researcher at ...").
        for tok in subtree:
            if tok.text == "," and tok.i > head.i:
                subtree = doc[subtree.start:tok.i]
                break
        return subtree.start_char, subtree.end_char

    def _antecedent(self, text: str, sentences: list[Sentence], index: int) -> tuple[int, int] | None:
        """The last person named at or before sentence ``index`` (a pronoun speaker's likeliest referent)."""
        for i in range(index, max(-1, index - 6), -1):
            s = sentences[i]
            people = [e for e in self.nlp(text[s.start:s.end]).ents if e.label_ == "PERSON"]
            if people:
                return s.start + people[-1].start_char, s.start + people[-1].end_char
        return None


def _is_named(doc: Doc, start: int, end: int) -> bool:
    """Whether ``doc.text[start:end]`` holds a named entity of a kind that speaks, or a proper noun."""
    if any(e.start_char < end and e.end_char > start and e.label_ in _SPEAKING_ENTITIES for e in doc.ents):
        return True
    return any(start <= t.idx < end and t.pos_ == "PROPN" for t in doc)
