"""Ranking a reader's spans by the sentence they stand in as well as by the span model's own score.

The span model sees a question and a window of text and scores start and end tokens; over a long story it often
prefers a well-formed span in a sentence about something else (NewsQA: the top span's sentence holds the answer
for about half of the questions). Two judges of that sentence against the question are added to each candidate's
score: the cosine of the two under the sentence encoder the archive is embedded with, and the share of the question's
words the sentence holds, rarer words (over the sentences read) weighing more, as the heuristic reader ranks
sentences. A long quotation dilutes the cosine of a sentence that names exactly what was asked ("... said Nikki
Haley, the US Ambassador to the United Nations"); the word share does not.
The weights are in the span model's logit units, fitted by ``benchmarks/span_ranking.py`` on the tune splits
(logistic regression of "the span is right" on the three) and saved as ``ranking.json`` beside the model; a model
without one ranks by its score alone. Confidence is still the chosen span's own margin, as calibrated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import takewhile
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from spacy.lang.en.stop_words import STOP_WORDS

from index.tokens import tokenize
from service.answering.readers.coverage import idf_coverage

__all__ = ["RANKING_FILE", "SpanRanking", "word_coverage"]

RANKING_FILE = "ranking.json"
# How far apart the cosines of one question with its candidates' sentences can put them: a span further below the best
# than the weights allow (this for the cosine, 1 for the word share, which lies in [0, 1]) cannot overtake it, and its
# sentence is not embedded. Cosines lie in [-1, 1]; over the 2,000 questions benchmarks/span_ranking.py reads, no three
# candidates' sentences spread by more than 0.74.
MAX_SPREAD = 1.0


def word_coverage(question: str, sentences: Sequence[str], pool: Sequence[str]) -> list[float]:
    """Share of the question's words each of ``sentences`` holds, rarer words among the sentences of ``pool`` (what
    was read) weighing more (``idf_coverage``). Question words ("who", "which") and other stop words do not count:
    a relative "who" in a sentence says nothing of the question."""
    asked = {t for t in tokenize(question) if t not in STOP_WORDS}
    return idf_coverage(asked, [set(tokenize(t)) for t in sentences], [set(tokenize(t)) for t in pool])


class SpanRanking(BaseModel):
    """How much the question-sentence cosine and word share add to a span's score (0 and 0: the model's order)."""

    sentence_weight: float = 0.0
    coverage_weight: float = 0.0
    candidates: int = 3  # the span model's best this many are reordered (the rest follow): all the gain, measured
    fitted_on: str = "not fitted: spans ranked by the reader's score alone"

    @classmethod
    def load(cls, model_dir: Path) -> SpanRanking:
        path = Path(model_dir) / RANKING_FILE
        return cls.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else cls()

    def save(self, model_dir: Path) -> None:
        (Path(model_dir) / RANKING_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def features(self, sentences: list[str], question: str, question_vector: np.ndarray | None,
                 embed: Callable[[list[str]], np.ndarray], pool: Callable[[], Sequence[str]],
                 cosine: bool = True, words: bool = True) -> np.ndarray:
        """Per sentence, its cosine with the question (the question embedded here when no vector is given) and the
        share of the question's words it holds; a column not asked for is 0 and costs nothing."""
        out = np.zeros((len(sentences), 2))
        if cosine:
            vector = question_vector if question_vector is not None else embed([question])[0]
            out[:, 0] = embed(sentences) @ vector
        if words:
            out[:, 1] = word_coverage(question, sentences, pool())
        return out

    def order(self, scores: Sequence[float], sentences: Sequence[str], question: str,
              question_vector: np.ndarray | None, embed: Callable[[list[str]], np.ndarray],
              pool: Callable[[], Sequence[str]]) -> list[int]:
        """Indices of the candidates (given best first by the span model's score), best first. Only the first
        ``candidates`` are reordered, and of those only the ones close enough to the best to overtake it:
        ``sentences[i]`` is the sentence of candidate i among them (each distinct one embedded once); the rest keep
        their place. ``pool`` gives the sentences read, over which a word's rarity is counted (asked for only when
        candidates can change places)."""
        reach = self.sentence_weight * MAX_SPREAD + self.coverage_weight
        head = len(list(takewhile(lambda s: scores[0] - s < reach, scores[:self.candidates])))
        if head < 2:
            return list(range(len(scores)))
        distinct = list(dict.fromkeys(sentences[:head]))
        if len(distinct) < 2:
            return list(range(len(scores)))  # one sentence: it lifts every candidate alike
        found = self.features(distinct, question, question_vector, embed, pool, cosine=bool(self.sentence_weight),
                              words=bool(self.coverage_weight))
        bonus = found @ np.array([self.sentence_weight, self.coverage_weight])
        by_sentence = dict(zip(distinct, bonus.tolist(), strict=True))
        ranked = [scores[i] + by_sentence[sentences[i]] for i in range(head)]
        return sorted(range(head), key=lambda i: -ranked[i]) + list(range(head, len(scores)))
