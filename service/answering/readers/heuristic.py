"""The heuristic extractive reader: picks the sentence that answers a question and the span in it that fits.

It is the light, always-available reader: no QA model is needed, only the embedding model and spaCy.

1. Candidate sentences come from the retrieved passages (sentence offsets were stored at index time).
2. Each is scored by cosine similarity to the question and by how much of the question's content it covers,
   weighting rare question words higher (a word no candidate sentence contains weighs most: if the archive never
   mentions a "director", a sentence about the prison does not answer "who is the prison director").
3. In the best sentences, entities and noun phrases whose type fits the question word (who -> PERSON/ORG,
   when -> DATE, how many -> CARDINAL ...; patterns in ``prompts/question_types.toml``), or the object of the
   question's verb for "what did X do" questions, are ranked by fit, the sentence score and closeness to the
   question's words.
4. The reader abstains when nothing fits, when the supporting sentence covers too little of the question,
   or when the confidence is below the configured threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from index.archive import ArchiveSnapshot as Snapshot
from index.embedding.embedder import Embedder
from index.models import Document, Passage
from service.answering.readers.base import CandidateSentence, ReadResult
from service.answering.readers.coverage import idf_coverage
from service.prompts import Prompts, QuestionType

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

__all__ = ["HeuristicReader"]

_WH_WORDS = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how"}
_OBJECT_DEPS = {"dobj", "ccomp", "xcomp", "attr", "oprd", "acomp", "advcl"}
_MAX_SPAN_TOKENS = 24
_NUMERIC = {"DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"}


@dataclass
class _Span:
    start: int  # offsets into the sentence text
    end: int
    fit: float


def _terms(doc: Doc | Span) -> set[str]:
    return {t.lemma_.lower() for t in doc if not (t.is_stop or t.is_punct or t.is_space)} | {
        t.lower_ for t in doc if not (t.is_stop or t.is_punct or t.is_space)}


class HeuristicReader:
    """Extracts a short answer span and its supporting sentence from retrieved passages, or abstains.

    Usage::

        reader = HeuristicReader(embedder, nlp, prompts, abstain_below=0.45)
        result = reader.run("Who doubted the crematorium claim?", passages, store.snapshot())
    """

    def __init__(self, embedder: Embedder, nlp: Language, prompts: Prompts, abstain_below: float = 0.45,
                 min_coverage: float = 0.5, max_sentences: int = 60, sentences_to_read: int = 5) -> None:
        self.name = "heuristic"
        if not 0.0 <= abstain_below <= 1.0:
            raise ValueError(f"abstain_below must be within [0, 1]. Currently, it is {abstain_below}")
        self.embedder = embedder
        self.nlp = nlp
        self.prompts = prompts
        self.abstain_below = abstain_below
        # The supporting sentence must contain at least this (idf-weighted) share of the question's words.
        self.min_coverage = min_coverage
        self.max_sentences = max_sentences
        self.sentences_to_read = sentences_to_read

    def run(self, question: str, passages: list[Passage], snapshot: Snapshot,
            question_vector: np.ndarray | None = None) -> ReadResult:
        """Read ``passages`` for an answer to ``question``.

        :param question: the user's question, already validated.
        :param passages: retrieved passages, best first.
        :param snapshot: the generation the passages came from (for document text and sentence offsets).
        :param question_vector: the question's embedding, if retrieval already computed it (saves a model call).
        :returns: an answer with offsets into its document, or an abstention (``answer`` is None).
        """
        if not passages:
            return ReadResult(answer=None, confidence=0.0, sentences=[])
        qdoc = self.nlp(question)
        qtype = self.prompts.question_type(question)
        q_terms = _terms(qdoc) - _WH_WORDS
        q_verbs = {t.lemma_.lower() for t in qdoc if t.pos_ == "VERB"}
        documents, pool = self._sentence_pool(passages, snapshot)
        texts = [documents[d].text[s:e] for d, s, e in pool]
        parsed = list(self.nlp.pipe(texts))
        if question_vector is None:
            question_vector = self.embedder.embed_query(question)
        similarity = self.embedder.embed(texts) @ question_vector
        sentence_terms = [_terms(d) for d in parsed]
        coverage = idf_coverage(q_terms, sentence_terms, sentence_terms)  # rarity over the pool read
        candidates = sorted(
            (CandidateSentence(doc_id=d, start=s, end=e, text=t, coverage=c, similarity=float(sim),
                               score=0.5 * c + 0.5 * max(float(sim), 0.0))
             for (d, s, e), t, c, sim in zip(pool, texts, coverage, similarity, strict=True)),
            key=lambda c: c.score, reverse=True)
        parsed_by_key = {(d, s): p for (d, s, _), p in zip(pool, parsed, strict=True)}

        best: tuple[float, float, CandidateSentence, _Span] | None = None
        for cand in candidates[: self.sentences_to_read]:
            sent = parsed_by_key[(cand.doc_id, cand.start)]
            for span in self._spans(sent, qtype, q_terms, q_verbs):
                closeness = self._closeness(sent, span, q_terms)
                score = cand.score * (0.55 + 0.45 * span.fit) * (0.8 + 0.2 * closeness)
                if best is None or score > best[0]:
                    best = (score, span.fit, cand, span)
        if best is None:
            return ReadResult(answer=None, confidence=self._confidence(candidates[0], 0.0), sentences=candidates)
        _, fit, cand, span = best
        confidence = self._confidence(cand, fit)
        if confidence < self.abstain_below or cand.coverage < self.min_coverage:
            return ReadResult(answer=None, confidence=confidence, sentences=candidates)
        text = documents[cand.doc_id].text
        a_start, a_end = cand.start + span.start, cand.start + span.end
        return ReadResult(answer=text[a_start:a_end], confidence=confidence, doc_id=cand.doc_id,
                          answer_start=a_start, answer_end=a_end, sentence_start=cand.start,
                          sentence_end=cand.end, sentences=candidates)

    # --- private steps -------------------------------------------------------------------------------
    def _sentence_pool(self, passages: list[Passage], snapshot: Snapshot
                       ) -> tuple[dict[str, Document], list[tuple[str, int, int]]]:
        """Sentences inside the retrieved passages, de-duplicated across overlapping chunks, in rank order."""
        documents: dict[str, Document] = {}
        pool: list[tuple[str, int, int]] = []
        seen: set[tuple[str, int]] = set()
        for passage in passages:
            if passage.doc_id not in documents:
                documents[passage.doc_id] = snapshot.document(passage.doc_id)
            for sent in snapshot.sentences(passage.doc_id):
                key = (passage.doc_id, sent.start)
                if passage.start <= sent.start and sent.end <= passage.end and key not in seen:
                    seen.add(key)
                    pool.append((passage.doc_id, sent.start, sent.end))
        return documents, pool[: self.max_sentences]

    @staticmethod
    def _spans(sent: Doc, qtype: QuestionType, q_terms: set[str], q_verbs: set[str]) -> list[_Span]:
        spans: list[_Span] = []
        labels = set(qtype.labels)

        def add(start_tok: int, end_tok: int, fit: float) -> None:
            toks = sent[start_tok:end_tok]
            while len(toks) and (toks[0].is_punct or toks[0].pos_ in ("DET", "CCONJ", "ADP", "PART")):
                toks = toks[1:]
            while len(toks) and (toks[-1].is_punct or toks[-1].pos_ in ("CCONJ", "ADP", "PART")):
                toks = toks[:-1]
            if not len(toks) or len(toks) > _MAX_SPAN_TOKENS:
                return
            content = _terms(toks)
            if not content or content <= q_terms or all(t.pos_ == "PRON" for t in toks):
                return  # an answer that only repeats the question, or a bare pronoun, answers nothing
            repeated = len(content & q_terms) / len(content)
            spans.append(_Span(toks.start_char, toks.end_char, fit * (1.0 - 0.6 * repeated)))

        # Subjects of the question's verb ("Who doubted ..." -> whoever doubts in this sentence).
        heads = [c for v in sent if v.lemma_.lower() in q_verbs for c in v.children
                 if c.dep_ in ("nsubj", "nsubjpass")]
        subject_heads = {c.i for c in heads}
        subject_tokens = {t.i for c in heads for t in c.subtree}
        for ent in sent.ents:
            if ent.label_ in labels:
                add(ent.start, ent.end, 1.0 if not subject_tokens or ent.root.i in subject_tokens else 0.85)
            elif qtype.noun_ok and not labels:
                # Dates and numbers rarely answer a "what" question: "when" and "how many" ask for those.
                add(ent.start, ent.end, 0.4 if ent.label_ in _NUMERIC else 0.6)
        if qtype.noun_ok:
            for chunk in sent.noun_chunks:
                fit = 0.8 if chunk.root.i in subject_heads else 0.45
                if labels and any(t.pos_ == "PROPN" for t in chunk):
                    fit += 0.15  # a named thing is likelier to be the entity the question asks for
                add(chunk.start, chunk.end, fit)
        if qtype.clause_ok:
            for verb in sent:
                if verb.lemma_.lower() in q_verbs and verb.pos_ in ("VERB", "AUX"):
                    # The object of the question's verb, best when the verb's subject is the question's.
                    subject = {t.lemma_.lower() for c in verb.children if c.dep_ == "nsubj" for t in c.subtree}
                    fit = 1.0 if subject & q_terms else 0.8
                    for child in verb.children:
                        if child.dep_ in _OBJECT_DEPS:
                            sub = list(child.subtree)
                            add(sub[0].i, sub[-1].i + 1, fit)
        return spans

    @staticmethod
    def _closeness(sent: Doc, span: _Span, q_terms: set[str]) -> float:
        """1 when the span sits right beside the question's words in the sentence, falling with distance."""
        positions = [t.i for t in sent if t.lemma_.lower() in q_terms or t.lower_ in q_terms]
        if not positions:
            return 0.0
        inside = [t.i for t in sent if span.start <= t.idx < span.end]
        if not inside:
            return 0.0
        distance = min(abs(p - i) for p in positions for i in (inside[0], inside[-1]))
        return 1.0 / (1.0 + distance / 8.0)

    @staticmethod
    def _confidence(cand: CandidateSentence, fit: float) -> float:
        """A 0..1 score from coverage of the question, similarity and answer-type fit."""
        value = 0.45 * cand.coverage + 0.35 * max(cand.similarity, 0.0) + 0.2 * fit
        return float(np.clip(value, 0.0, 1.0))
