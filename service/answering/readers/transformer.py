"""The transformer reader: a question-answering model reads the retrieved passages and quotes the best span.

Passages of one article that overlap or touch are merged before reading, so an answer that straddles two chunks
is still found; the model reads long text in overlapping windows (``SpanModel``) and every span is mapped back to
exact offsets of the stored article. The same span found through several passages counts once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from spacy.lang.en.stop_words import STOP_WORDS

from index.archive import ArchiveSnapshot as Snapshot
from index.models import Document, Passage, Sentence
from service.answering.answer_core import AnswerCore
from service.answering.attribution import Attributor
from service.answering.disagreement import content_words
from service.answering.readers.base import AnswerCandidate, CandidateSentence, ReadResult
from service.answering.readers.calibration import Calibration, article_ranks
from service.answering.readers.span_model import SpanModel, SpanPrediction
from service.answering.readers.span_ranking import SpanRanking
from service.answering.readers.squad_metrics import normalize_answer
from service.answering.relations import Relations
from service.answering.span_types import SpanTypes
from service.answering.stances import StanceCues

__all__ = ["BUNDLED_READER", "TransformerReader"]

# The reader trained by `newsroom-qa train-reader` and shipped with the package (model card inside).
BUNDLED_READER = Path(__file__).resolve().parent / "weights" / "minilm-newsroom-reader"


@dataclass(frozen=True)
class _Segment:
    doc_id: str
    start: int
    end: int


def merge_passages(passages: list[Passage], gap: int = 1) -> list[_Segment]:
    """Contiguous stretches of each article covered by the passages, in the order the articles were first ranked."""
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for p in passages:
        by_doc.setdefault(p.doc_id, []).append((p.start, p.end))
    segments: list[_Segment] = []
    for doc_id, ranges in by_doc.items():
        ranges.sort()
        cur_start, cur_end = ranges[0]
        for start, end in ranges[1:]:
            if start <= cur_end + gap:
                cur_end = max(cur_end, end)
            else:
                segments.append(_Segment(doc_id, cur_start, cur_end))
                cur_start, cur_end = start, end
        segments.append(_Segment(doc_id, cur_start, cur_end))
    return segments


def _sentence_at(sentences: list[Sentence], start: int, end: int) -> tuple[int, int]:
    """The stored sentence(s) holding ``[start, end)``: an answer crossing a boundary gets both sentences."""
    first = next((s for s in sentences if s.start <= start < s.end), None)
    last = next((s for s in sentences if s.start < end <= s.end), None)
    return (first.start if first else start), (last.end if last else end)


def _sentences_in(segments: list[_Segment], sentences: dict[str, list[Sentence]]
                  ) -> Iterator[tuple[str, int, Sentence]]:
    """(doc id, index, sentence) of every stored sentence lying inside one of the segments, in segment order."""
    for seg in segments:
        for i, s in enumerate(sentences[seg.doc_id]):
            if seg.start <= s.start and s.end <= seg.end:
                yield seg.doc_id, i, s


ATTRIBUTION_MAX_WORDS = 12  # '," said Geoffrey Mock, a Middle East specialist at Amnesty.' is 10
_QUESTION_WORDS = {"say", "said", "tell", "told", "think", "believe", "view", "position", "about"}


_WORD = re.compile(r"[\w\u2019'-]+")
TRIM_MIN_WORDS = 4  # shorter spans are names and figures: left as the reader gave them


def _lead_repeating_the_question(answer: str, question: str) -> int:
    """How many characters open ``answer`` by repeating the question ("some of the satellite photographs have
    existed for years" for "What did they say about the satellite photographs?"): the answer is what follows.
    0 when the span is short, when the lead repeats no word of the question, or when nothing would be left."""
    words = list(_WORD.finditer(answer))
    if len(words) < TRIM_MIN_WORDS:
        return 0
    asked = {w.lower().rstrip("s") for w in _WORD.findall(question)}
    cut, repeated = 0, False
    for i, w in enumerate(words):
        lowered = w.group().lower()
        if lowered.rstrip("s") in asked and lowered not in STOP_WORDS:
            repeated, cut = True, i + 1
        elif lowered not in STOP_WORDS:
            break
    if not repeated or cut >= len(words) - 1:
        return 0
    return words[cut].start()


def _other_articles_answers(best: AnswerCandidate, others: list[AnswerCandidate], documents: dict[str, Document],
                            min_confidence: float) -> list[AnswerCandidate]:
    """Each other article's answer to set beside the best one (for "sources differ"): of its answers confident
    enough to stand alone, the one whose sentence shares most words with the best answer's sentence (the same claim,
    not merely another figure in the article); else its best answer."""
    claim = content_words(documents[best.doc_id].text[best.sentence_start:best.sentence_end])
    chosen: dict[str, tuple[int, AnswerCandidate]] = {}
    for a in others:
        if a.doc_id == best.doc_id:
            continue
        shared = len(claim & content_words(documents[a.doc_id].text[a.sentence_start:a.sentence_end])) \
            if a.confidence >= min_confidence else -1
        if a.doc_id not in chosen or shared > chosen[a.doc_id][0]:
            chosen[a.doc_id] = (shared, a)
    return [a for _, a in chosen.values()]


def _best_above(best: AnswerCandidate, answers: list[AnswerCandidate], passages: list[Passage]) -> list[float]:
    """The best confidence among ``answers`` in each article retrieved above ``best``'s (0 for one with none)."""
    ranks = article_ranks(p.doc_id for p in passages)
    above = {doc_id: 0.0 for doc_id, r in ranks.items() if r < ranks.get(best.doc_id, 0)}
    for a in answers:
        if a.doc_id in above:
            above[a.doc_id] = max(above[a.doc_id], a.confidence)
    return list(above.values())


class TransformerReader:
    """Reads passages with a span model; abstains when the calibrated confidence is below the threshold.

    Usage::

        reader = TransformerReader(SpanModel(BUNDLED_READER), Calibration.load(BUNDLED_READER))
        result = reader.run("Who doubted the crematorium claim?", passages, store.snapshot())
    """

    def __init__(self, model: SpanModel, calibration: Calibration, abstain_below: float | None = None,
                 top_n: int = 8, span_types: SpanTypes | None = None, stances: StanceCues | None = None,
                 promoted_min: float = 0.5, attributor: Attributor | None = None,
                 core: AnswerCore | None = None, relations: Relations | None = None,
                 ranking: SpanRanking | None = None, embed: Callable[[list[str]], np.ndarray] | None = None) -> None:
        """:param ranking: weighs each span's sentence against the question (``embed``: the sentence encoder the
            question vector comes from); None: spans in the span model's order.
        :param span_types: keeps only spans of the type the question asks for (None: any span).
        :param promoted_min: the confidence a span needs when spans the reader preferred were of the wrong type.
        :param attributor: for "What did <person> say ...?", reads only what that person is reported to have said.
        :param core: cuts an answer to "What did X urge Y to do?" to the action, without the clause after it.
        :param stances: for a question about doubt (and the like), reads only the sentences expressing it.
        :param relations: answers "X is the capital of which country?" from the parse of the passages' sentences."""
        self.relations = relations
        self.ranking = ranking if embed is not None else None
        self.embed = embed
        self.span_types = span_types
        self.core = core
        self.promoted_min = promoted_min
        self.attributor = attributor
        self.stances = stances
        self.model = model
        self.calibration = calibration
        self.abstain_below = calibration.threshold if abstain_below is None else abstain_below
        self.top_n = top_n
        self.name = f"transformers:{model.name}"

    def run(self, question: str, passages: list[Passage], snapshot: Snapshot,
            question_vector: np.ndarray | None = None) -> ReadResult:
        """Read ``passages`` (best first) for an answer; ``question_vector`` (the question embedded as the archive
        is) weighs the spans' sentences when a ranking is set, embedded here when not given."""
        if not passages:
            return ReadResult(answer=None, confidence=0.0, sentences=[])
        segments = merge_passages(passages)
        documents = {s.doc_id: snapshot.document(s.doc_id) for s in segments}
        sentences = {d: snapshot.sentences(d) for d in documents}
        stance = self._stance_sentences(question, segments, documents, sentences)
        spoken = [] if stance else self._speakers_sentences(question, segments, documents, sentences)
        segments = stance or spoken or segments
        contexts = [documents[s.doc_id].text[s.start:s.end] for s in segments]
        predictions = self.model.predict(question, contexts, top_n=self.top_n)
        if self.ranking is not None and self.embed is not None and predictions:
            predictions = self._by_sentence(question, question_vector, predictions, segments, documents, sentences)

        answers: list[AnswerCandidate] = []
        seen: set[tuple[str, str]] = set()
        for p in predictions:
            seg = segments[p.context_index]
            start, end = seg.start + p.start, seg.start + p.end
            text = documents[seg.doc_id].text[start:end]
            key = (seg.doc_id, normalize_answer(text))
            if key in seen or not key[1]:
                continue  # the same answer again (overlapping windows or a repeated mention)
            seen.add(key)
            s_start, s_end = _sentence_at(sentences[seg.doc_id], start, end)
            answers.append(AnswerCandidate(doc_id=seg.doc_id, answer=text, answer_start=start, answer_end=end,
                                           sentence_start=s_start, sentence_end=s_end,
                                           confidence=self.calibration.confidence(p.margin)))
        threshold = self.abstain_below
        if self.span_types is not None and answers:
            typed = self.span_types.select(question, answers, documents)
            if typed and typed[0][0] != 0:
                # The reader's own first choice was of the wrong type: its runner-up must be surer to be taken.
                threshold = max(threshold, self.promoted_min)
            answers = [a.model_copy(update=dict(zip(("sentence_start", "sentence_end"),
                                                    _sentence_at(sentences[a.doc_id], a.answer_start, a.answer_end),
                                                    strict=True)))
                       for _, a in typed]
        related = self._related(question, answers, segments, documents, sentences)
        if related is not None:
            answers = [related, *(a for a in answers if (a.doc_id, a.answer_start, a.answer_end)
                                  != (related.doc_id, related.answer_start, related.answer_end))]
            threshold = self.abstain_below
        answers = [self._without_repeated_lead(question, a) for a in answers]
        if self.core is not None and answers:
            answers[0] = self._core_of(question, answers[0], documents[answers[0].doc_id].text)
        if spoken and self.attributor is not None:
            answers = [self._as_quotation(a, documents[a.doc_id].text, question) for a in answers]
        pool = self._sentence_pool(answers, segments, documents, sentences)
        if not answers:
            return ReadResult(answer=None, confidence=0.0, sentences=pool)
        best = answers[0]
        others = _other_articles_answers(best, answers[1:], documents, self.abstain_below)
        # The articles retrieved above the answer's weigh only an answer the span model chose among all the passages
        # read: not one read from the sentences a speaker or stance selected, nor one found by the parse.
        above = None if stance or spoken or related is not None else _best_above(best, answers, passages)
        rank = self.calibration.rank_of(above) if above and self.calibration.rank_weight else 0
        confidence = best.confidence if not rank \
            else self.calibration.confidence(self.calibration.margin(best.confidence), rank)
        if confidence < threshold:
            return ReadResult(answer=None, confidence=confidence, sentences=pool, best_guess=best, ranked_above=above)
        return ReadResult(answer=best.answer, confidence=confidence, doc_id=best.doc_id,
                          answer_start=best.answer_start, answer_end=best.answer_end,
                          sentence_start=best.sentence_start, sentence_end=best.sentence_end, sentences=pool,
                          alternatives=others, best_guess=best, ranked_above=above)

    def _by_sentence(self, question: str, question_vector: np.ndarray | None, predictions: list[SpanPrediction],
                     segments: list[_Segment], documents: dict[str, Document], sentences: dict[str, list[Sentence]]
                     ) -> list[SpanPrediction]:
        """``predictions`` reordered by ``self.ranking``: span score plus how close the span's sentence is to the
        question (cosine, and the question's words it holds)."""
        assert self.ranking is not None and self.embed is not None
        texts = []
        for p in predictions[:self.ranking.candidates]:
            seg = segments[p.context_index]
            s_start, s_end = _sentence_at(sentences[seg.doc_id], seg.start + p.start, seg.start + p.end)
            texts.append(documents[seg.doc_id].text[s_start:s_end])
        def pool() -> list[str]:
            return [documents[d].text[s.start:s.end] for d, _, s in _sentences_in(segments, sentences)]

        order = self.ranking.order([p.score for p in predictions], texts, question, question_vector, self.embed, pool)
        return [predictions[i] for i in order]

    def _related(self, question: str, answers: list[AnswerCandidate], segments: list[_Segment],
                 documents: dict[str, Document], sentences: dict[str, list[Sentence]]) -> AnswerCandidate | None:
        """The answer the passages' parse gives to a relational question (``Relations``), None for other questions
        or when no sentence ties the subject to the relation. Its confidence is the one measured for such answers,
        or the reader's own for the same span if that is higher."""
        if self.relations is None or not self.relations.asks(question):
            return None
        required = self.span_types.required(question) if self.span_types is not None else None
        read = ((d, s.start, documents[d].text[s.start:s.end]) for d, _, s in _sentences_in(segments, sentences))
        found = self.relations.answer(question, read, required.labels if required is not None else None)
        if found is None:
            return None
        surest = max((a.confidence for a in answers if (a.doc_id, a.answer_start, a.answer_end)
                      == (found.doc_id, found.answer_start, found.answer_end)), default=0.0)
        return found.model_copy(update={"confidence": max(found.confidence, surest)})

    def _stance_sentences(self, question: str, segments: list[_Segment], documents: dict[str, Document],
                          sentences: dict[str, list[Sentence]]) -> list[_Segment]:
        """The passages' sentences expressing the stance the question asks about, in passage order (none if the
        question asks about no stance)."""
        stance = self.stances.stance_of(question) if self.stances is not None else None
        if stance is None:
            return []
        return [_Segment(doc_id, s.start, s.end) for doc_id, _, s in _sentences_in(segments, sentences)
                if stance.expressed_in(documents[doc_id].text[s.start:s.end])]

    def _core_of(self, question: str, answer: AnswerCandidate, text: str) -> AnswerCandidate:
        """The answer without the clause that follows its verb (``AnswerCore``)."""
        assert self.core is not None
        s0 = answer.sentence_start
        end = s0 + self.core.end(question, text[s0:answer.sentence_end], answer.answer_start - s0,
                                 answer.answer_end - s0)
        if end >= answer.answer_end:
            return answer
        return answer.model_copy(update={"answer": text[answer.answer_start:end], "answer_end": end})

    @staticmethod
    def _without_repeated_lead(question: str, answer: AnswerCandidate) -> AnswerCandidate:
        cut = _lead_repeating_the_question(answer.answer, question)
        if not cut:
            return answer
        return answer.model_copy(update={"answer": answer.answer[cut:], "answer_start": answer.answer_start + cut})

    def _as_quotation(self, answer: AnswerCandidate, text: str, question: str) -> AnswerCandidate:
        """What the person said: the quotation of the answer's sentence when the reader's span lies outside it
        ("a councillor" in '"The board must publish every report," said Lena Kask, a councillor.'), from after an
        opening that restates the question's topic (``AnswerCore.start``)."""
        assert self.attributor is not None
        quote = self.attributor.quotation(text, answer.sentence_start, answer.sentence_end)
        if quote is None:
            return answer
        outside = answer.answer_end <= quote[0] or answer.answer_start >= quote[1]
        # A span in or across the quotation is taken for all of it; one outside it only if it lies in the
        # attribution ('," said Lena Kask, a councillor.'), not in a clause of its own.
        part = text[quote[1]:answer.sentence_end] if answer.answer_start >= quote[1] \
            else text[answer.sentence_start:quote[0]]
        if outside and len(part.split()) > ATTRIBUTION_MAX_WORDS:
            return answer
        start = quote[0]
        if self.core is not None:
            s0 = answer.sentence_start
            start = s0 + self.core.start(question, text[s0:answer.sentence_end], quote[0] - s0, quote[1] - s0)
        return answer.model_copy(update={"answer": text[start:quote[1]], "answer_start": start,
                                         "answer_end": quote[1]})

    def _speakers_sentences(self, question: str, segments: list[_Segment], documents: dict[str, Document],
                            sentences: dict[str, list[Sentence]]) -> list[_Segment]:
        """The passages' sentences said by the person the question asks about (none if it asks about no one)."""
        names = self.attributor.person_asked_about(question) if self.attributor is not None else []
        if not names or self.attributor is None:
            return []
        spoken = [_Segment(doc_id, s.start, s.end) for doc_id, i, s in _sentences_in(segments, sentences)
                  if self.attributor.spoken_by(documents[doc_id].text, sentences[doc_id], i, names)]
        # "What did X say about the zones?": of X's sentences, those about what the question names.
        topic = content_words(question) - set(names) - _QUESTION_WORDS
        shared = [len(topic & content_words(documents[s.doc_id].text[s.start:s.end])) for s in spoken]
        return [s for s, n in zip(spoken, shared, strict=True) if n == max(shared, default=0)]

    @staticmethod
    def _sentence_pool(answers: list[AnswerCandidate], segments: list[_Segment], documents: dict[str, Document],
                       sentences: dict[str, list[Sentence]]) -> list[CandidateSentence]:
        """Sentences holding candidate answers first (by confidence), then the rest of the passages in rank order."""
        pool: list[CandidateSentence] = []
        seen: set[tuple[str, int]] = set()
        for a in answers:
            if (a.doc_id, a.sentence_start) not in seen:
                seen.add((a.doc_id, a.sentence_start))
                pool.append(CandidateSentence(doc_id=a.doc_id, start=a.sentence_start, end=a.sentence_end,
                                              text=documents[a.doc_id].text[a.sentence_start:a.sentence_end],
                                              score=a.confidence))
        for seg in segments:
            for s in sentences[seg.doc_id]:
                if seg.start <= s.start and s.end <= seg.end and (seg.doc_id, s.start) not in seen:
                    seen.add((seg.doc_id, s.start))
                    pool.append(CandidateSentence(doc_id=seg.doc_id, start=s.start, end=s.end,
                                                  text=documents[seg.doc_id].text[s.start:s.end], score=0.0))
        return pool
