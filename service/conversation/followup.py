"""Rewrite a chat follow-up into a question that stands on its own, from the entities of earlier turns.

"What did he say?" after an answer naming Tomas Lindqvist becomes "What did Tomas Lindqvist say?"; "And in 2013?"
continues the previous question with the new detail. Retrieval and the reader see only the rewritten question, and
the user sees it too (``resolved_question``), so a wrong guess is visible rather than silent. The rules (which
pronoun means which kind of referent, which phrasings are ellipses) are data in ``prompts/followups.toml``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from index.errors import QAError

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span, Token

__all__ = ["FollowupResolver", "FollowupRules", "PriorTurn", "load_followup_rules"]

SUBJECT_DEPS = {"nsubj", "nsubjpass", "poss"}
WH_WORDS = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how"}


class EllipsisRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[str]
    max_verbless_words: int = Field(ge=0)


class FollowupRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lookback_turns: int = Field(ge=1, le=20)
    pronouns: dict[str, str]
    kinds: dict[str, list[str]]
    swap_groups: dict[str, list[str]]
    ellipsis: EllipsisRules

    def model_post_init(self, __context: object) -> None:
        unknown = set(self.pronouns.values()) - set(self.kinds)
        if unknown:
            raise ValueError(f"pronouns refer to kinds not listed under [kinds]: {sorted(unknown)}")


def load_followup_rules(path: Path) -> FollowupRules:
    try:
        with path.open("rb") as fh:
            return FollowupRules.model_validate(tomllib.load(fh))
    except FileNotFoundError as exc:
        raise QAError(f"{path} is missing; the prompts directory must hold the follow-up rules") from exc
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise QAError(f"{path} is not valid: {exc}") from exc


@dataclass(frozen=True)
class PriorTurn:
    """What an earlier turn contributes: the question it answered, and the answer and sentence it showed."""

    question: str
    answer: str | None = None
    sentence: str | None = None


@dataclass(frozen=True)
class _Mention:
    text: str
    kinds: frozenset[str]
    plural: bool = False


class FollowupResolver:
    """Resolves pronouns and ellipses against the last few turns of a conversation."""

    def __init__(self, nlp: Language, rules: FollowupRules) -> None:
        self.nlp = nlp
        self.rules = rules
        self._ellipses = [re.compile(p, re.IGNORECASE) for p in rules.ellipsis.patterns]
        self._label_kinds: dict[str, set[str]] = {}
        for kind, labels in rules.kinds.items():
            for label in labels:
                self._label_kinds.setdefault(label, set()).add(kind)

    def resolve(self, message: str, history: list[PriorTurn]) -> str:
        """The question to answer for ``message`` given ``history`` (oldest first); unchanged when it stands alone."""
        text = " ".join(message.split())
        recent = history[-self.rules.lookback_turns:]
        if not recent or not text:
            return text
        found = self._ellipsis(text)
        if found is not None:
            rest, marked = found
            rest_doc = self.nlp(rest)
            if _has_verb(rest_doc):  # "And who denied it?": a full question after a conjunction
                text = _sentence_case(rest) + ("?" if text.endswith("?") else "")
            else:
                text = self._expand(rest_doc, recent[-1].question, append=marked) or text
        return self._replace_pronouns(text, recent)

    # --- ellipsis ------------------------------------------------------------------------------------
    def _ellipsis(self, text: str) -> tuple[str, bool] | None:
        """The new detail of an elliptical follow-up, and whether a phrasing marked it ("And ...", "What about")."""
        for pattern in self._ellipses:
            match = pattern.match(text)
            if match:
                return match.group("rest"), True
        words = text.rstrip("?.! ").split()
        if 0 < len(words) <= self.rules.ellipsis.max_verbless_words:
            doc = self.nlp(text)
            if not _has_verb(doc) and not any(t.lower_ in WH_WORDS for t in doc):
                return text.rstrip("?.! "), False
        return None

    def _expand(self, rest: Doc, previous: str, append: bool) -> str | None:
        """Swap the new detail for the previous question's detail of the same sort ("Russia" -> "Iran", "in 2015"
        -> "before 2013"); failing that, add it to the end of the question when the phrasing said it continues."""
        prev = self.nlp(previous)
        for new in rest.ents:
            group = self._swap_group(new.label_)
            old = next((e for e in prev.ents if group and e.label_ in self.rules.swap_groups[group]), None)
            if old is None:
                continue
            new_start, old_start = new.start_char, old.start_char
            if new.start > 0 and rest[new.start - 1].pos_ == "ADP":  # the new detail brings its preposition
                new_start = rest[new.start - 1].idx
                if old.start > 0 and prev[old.start - 1].pos_ == "ADP":
                    old_start = prev[old.start - 1].idx
            return previous[:old_start] + rest.text[new_start:new.end_char] + previous[old.end_char:]
        if not append:
            return None
        body = previous.rstrip().rstrip("?.!").rstrip()
        return f"{body} {rest.text}?"

    def _swap_group(self, label: str) -> str | None:
        return next((g for g, labels in self.rules.swap_groups.items() if label in labels), None)

    # --- pronouns ------------------------------------------------------------------------------------
    def _replace_pronouns(self, text: str, history: list[PriorTurn]) -> str:
        doc = self.nlp(text)
        present = {kind for ent in doc.ents for kind in self._label_kinds.get(ent.label_, ())}
        used: set[str] = set()
        parts: list[str] = []
        for token in doc:
            kind = self.rules.pronouns.get(token.lower_)
            replacement = None
            if kind is not None and kind not in present and token.pos_ == "PRON" and not _quoted(token):
                mention = self._referent(kind, token.dep_ in SUBJECT_DEPS or token.tag_ == "PRP$", history)
                if mention is not None and mention.text not in used:
                    used.add(mention.text)
                    replacement = _possessive(mention.text) if token.tag_ == "PRP$" or token.lower_ == "hers" \
                        else mention.text
            parts.append((replacement if replacement is not None else token.text) + token.whitespace_)
        return "".join(parts)

    def _referent(self, kind: str, subject_like: bool, history: list[PriorTurn]) -> _Mention | None:
        """The most recent mention of ``kind``; for a group, a plural noun phrase of the same turn comes first
        ("What do they show?" after "declassified photographs" means the photographs, not the office)."""
        for turn in reversed(history):
            fitting = [m for m in self._mentions(turn, subject_like) if kind in m.kinds]
            if kind == "group":
                fitting.sort(key=lambda m: not m.plural)
            if fitting:
                return fitting[0]
        return None

    def _mentions(self, turn: PriorTurn, subject_like: bool) -> list[_Mention]:
        """A turn's candidate referents in the order a reader would try them.

        The answer comes first, unless the pronoun is a subject and the previous question asked for an object
        ("What did the office release?" -> "When did it release them?": "it" is the office, not the answer).
        """
        first, asked, context, asks_subject = self._turn_mentions(turn)
        if subject_like and not asks_subject:
            return [*asked, *first, *context]
        return [*first, *asked, *context]

    @lru_cache(maxsize=256)  # noqa: B019 - one resolver lives as long as the service; turns repeat every follow-up
    def _turn_mentions(self, turn: PriorTurn) -> tuple[tuple[_Mention, ...], tuple[_Mention, ...],
                                                       tuple[_Mention, ...], bool]:
        """(answer, question's mentions, supporting sentence's mentions, whether the question asked for a
        subject): parsed once per turn, not once per pronoun."""
        question = self.nlp(turn.question)
        sentence = self.nlp(turn.sentence) if turn.sentence else None
        answer = self._answer_mention(turn.answer, sentence) if turn.answer else None
        if answer is not None and question[:1].text.lower() in ("who", "whom") and _is_name(self.nlp(answer.text)):
            # The answer to "Who ...?" that is a name is a person, whatever label the small NER model gave it.
            answer = _Mention(answer.text, answer.kinds | {"person"}, answer.plural)
        asked = tuple([self._in_phrase(e) for e in question.ents] + _noun_phrases(question))
        context = tuple(self._entity(e) for e in sentence.ents) if sentence is not None else ()
        return ((answer,) if answer is not None else ()), asked, context, _asks_for_subject(question)

    def _in_phrase(self, ent: Span) -> _Mention:
        """An entity that only modifies a noun ("the Kessel dam") stands for the whole phrase, a thing."""
        chunk = next((c for c in ent.doc.noun_chunks if c.start <= ent.start and ent.end <= c.end), None)
        if chunk is None or ent.start <= chunk.root.i < ent.end:
            return self._entity(ent)
        words = [t for t in chunk if t.lower_ not in WH_WORDS]
        plural = chunk.root.tag_ in ("NNS", "NNPS")
        return _Mention(ent.doc.text[words[0].idx:chunk.end_char], frozenset({"thing", "group"} if plural
                                                                             else {"thing"}), plural)

    def _entity(self, ent: Span) -> _Mention:
        return _Mention(ent.text, frozenset(self._label_kinds.get(ent.label_, ())))

    def _answer_mention(self, answer: str, sentence: Doc | None) -> _Mention | None:
        """The answer as a referent: typed by the entity it is in its sentence, else as a noun phrase."""
        if sentence is not None:
            ents = sorted((e for e in sentence.ents if e.text in answer or answer in e.text),
                          key=lambda e: abs(len(e.text) - len(answer)))
            if ents and len(answer) >= 0.6 * len(ents[0].text):
                return _Mention(answer, frozenset(self._label_kinds.get(ents[0].label_, ())))
        doc = self.nlp(answer)
        if doc.ents and len(doc.ents[0].text) >= 0.6 * len(answer):
            return _Mention(answer, frozenset(self._label_kinds.get(doc.ents[0].label_, ())))
        chunks = _noun_phrases(doc)
        return chunks[0] if chunks else None


def _noun_phrases(doc: Doc) -> list[_Mention]:
    """Noun chunks that are not wh-words or pronouns: things, or groups when plural ("the photographs")."""
    found = []
    for chunk in doc.noun_chunks:
        if chunk.root.pos_ == "PRON" or chunk.root.lower_ in WH_WORDS:
            continue
        words = [t for t in chunk if t.lower_ not in WH_WORDS]
        if not words:
            continue
        text = doc.text[words[0].idx:chunk.end_char]
        plural = chunk.root.tag_ in ("NNS", "NNPS")
        found.append(_Mention(text, frozenset({"thing", "group"} if plural else {"thing"}), plural))
    return found


def _asks_for_subject(question: Doc) -> bool:
    """True for "Who doubted ...?" / "Which group reported ...?": the answer is the subject of the question."""
    for token in question:
        if token.lower_ in WH_WORDS:
            head = token.head if token.dep_ == "det" else token
            return head.dep_ in ("nsubj", "nsubjpass")
    return False


def _is_name(doc: Doc) -> bool:
    return len(doc) > 0 and all(t.pos_ == "PROPN" or t.is_punct for t in doc)


def _has_verb(doc: Doc) -> bool:
    return any(t.pos_ in ("VERB", "AUX") for t in doc)


def _quoted(token: Token) -> bool:
    before = token.doc.text[:token.idx]
    return before.count('"') % 2 == 1 or before.count("“") > before.count("”")


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]
