"""The lexical side of retrieval: BM25 over chunks (Lucene's formula, as bm25s scores it) with English stopwords and
stemming, plus spelling-variant expansion of query words against the corpus vocabulary.

Each segment of the data directory stores its own term counts (``TermCounts``: how often each word occurs in each
chunk and each article). A search scores every live segment with statistics taken over all of them at query time
(document frequencies, document count and average length, deleted articles left out), so an archive written in
fifty batches scores exactly as one written at once, and adding a batch never rebuilds the others. bm25s stores
scores with idf and average length already applied, which cannot be corrected per segment; the scoring is a few
array operations over the postings instead. Variant expansion lets a query spelled "Sednaya" also
match an article that writes "Saydnaya", and a small typo in a name still find it: a query word is matched to
corpus words that look alike (rapidfuzz ratio), which then count at a reduced weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from rapidfuzz import fuzz, process

from index.local.term_counts import Postings, TermCounts
from index.tokens import VARIANT_MAX_DF, VARIANT_MIN_RATIO, VARIANT_WEIGHT, may_have_variants, tokenize

__all__ = ["LexicalIndex", "LexicalPart"]


LexicalPart = tuple[TermCounts, np.ndarray | None, np.ndarray | None]
"""One segment in a search: its counts, and which of its chunks and articles are live (None: all of them)."""


class _Level:
    """Chunks or whole articles across every segment: the collection statistics BM25 needs, over live rows only."""

    def __init__(self, matrices: list[tuple[TermCounts, Postings | None, np.ndarray, np.ndarray | None]]) -> None:
        self.matrices = matrices  # (counts, postings, lengths, live mask)
        self.n = sum(int(live.sum()) if live is not None else len(lengths) for _, _, lengths, live in matrices)
        total = sum(float(lengths[live].sum(dtype=np.float64) if live is not None else lengths.sum(dtype=np.float64))
                    for _, _, lengths, live in matrices)
        self.avg_len = total / self.n if self.n else 1.0
        self._df: dict[str, int] = {}

    def df(self, word: str) -> int:
        if word not in self._df:
            n = 0
            for counts, postings, _, live in self.matrices:
                col = counts.vocab.get(word)
                if col is None or postings is None:
                    continue
                rows, _ = postings.column(col)
                n += int(live[rows].sum()) if live is not None else len(rows)
            if len(self._df) > 100_000:
                self._df.clear()
            self._df[word] = n
        return self._df[word]

    def idf(self, word: str) -> float:
        df = self.df(word)
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5)) if df else 0.0

    def tfc(self, tf: np.ndarray, lengths: np.ndarray, k1: float, b: float) -> np.ndarray:
        return tf / (k1 * (1 - b + b * lengths / self.avg_len) + tf)

    def scores(self, weights: dict[str, float], k1: float, b: float) -> list[np.ndarray]:
        """Each segment's BM25 score of every row for weighted words (0 for deleted rows)."""
        idf = {w: self.idf(w) for w in weights}
        out = []
        for counts, postings, lengths, live in self.matrices:
            scores = np.zeros(len(lengths), dtype=np.float32)
            if postings is not None:
                for word, weight in weights.items():
                    col = counts.vocab.get(word)
                    if col is None or not idf[word]:
                        continue
                    rows, tf = postings.column(col)
                    scores[rows] += (weight * idf[word]) * self.tfc(tf, lengths[rows], k1, b)
            if live is not None:
                scores[~live] = 0.0
            out.append(scores)
        return out


class LexicalIndex:
    """BM25 over the chunks of one or more segments, addressed by the chunks' row ids.

    Usage::

        lexical = LexicalIndex.build(["Saydnaya prison ...", ...], rowids=np.array([1, ...]))
        lexical.search("Sednaya prison", top_k=10)   # [(rowid, score), ...]

    Scores and positions run over the segments' chunks concatenated in segment order.
    """

    def __init__(self, parts: Sequence[LexicalPart], k1: float = 1.2, b: float = 0.75) -> None:
        self.parts = list(parts)
        self.k1, self.b = k1, b
        self.chunk_level = _Level([(c, c.chunks, c.chunk_len, live) for c, live, _ in self.parts])
        self.doc_level = _Level([(c, c.docs, c.doc_len, live) for c, _, live in self.parts]) \
            if self.parts and all(c.docs is not None for c, _, _ in self.parts) else None
        self._chunk_offsets = np.cumsum([0] + [c.n_chunks for c, _, _ in self.parts])
        self._doc_offsets = np.cumsum([0] + [c.n_docs for c, _, _ in self.parts])
        self._max_df = max(2, int(VARIANT_MAX_DF * self.chunk_level.n))
        self._choices: dict[str, list[str]] = {}

    @classmethod
    def build(cls, texts: list[str], rowids: np.ndarray, doc_texts: list[str] | None = None,
              doc_of_chunk: np.ndarray | None = None, k1: float = 1.2, b: float = 0.75) -> LexicalIndex:
        """Index ``texts`` (one per chunk, in the order of ``rowids``) and, if given, whole articles, as one segment.

        :param doc_texts: full article texts; ``doc_of_chunk[i]`` is the article of chunk ``i``.
        """
        counts = TermCounts.from_tokens([tokenize(t) for t in texts], np.asarray(rowids, dtype=np.int64),
                                        [tokenize(t) for t in doc_texts] if doc_texts else None, doc_of_chunk)
        return cls([(counts, None, None)], k1=k1, b=b)

    @cached_property
    def rowids(self) -> np.ndarray:
        """Row ids of every chunk (deleted ones included), in scoring order."""
        arrays = [c.rowids for c, _, _ in self.parts]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

    @cached_property
    def live_rowids(self) -> np.ndarray:
        arrays = [c.rowids if live is None else c.rowids[live] for c, live, _ in self.parts]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

    @cached_property
    def doc_of_chunk(self) -> np.ndarray:
        """The article position of every chunk, in scoring order (articles numbered across segments)."""
        arrays = [c.doc_of_chunk + off for (c, _, _), off in zip(self.parts, self._doc_offsets, strict=False)]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

    def variants(self, token: str) -> list[str]:
        """Rare corpus words spelled like ``token`` (same first letter, rapidfuzz ratio >= 80), best first.

        A word the corpus uses often is taken as correctly spelled and gets no variants.
        """
        if not may_have_variants(token, self.chunk_level.df(token), self._max_df):
            return []
        initial = token[0]
        if initial not in self._choices:  # every segment's rare words with this initial, once per snapshot
            self._choices[initial] = sorted({w for c, _, _ in self.parts for w in c.rare_words(initial, self._max_df)})
        choices = self._choices[initial]
        found = process.extract(token, choices, scorer=fuzz.ratio, score_cutoff=VARIANT_MIN_RATIO, limit=10)
        return [w for w, _, _ in found if w != token and 0 < self.chunk_level.df(w) <= self._max_df][:3]

    def _concat(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays).astype(np.float32) if arrays else np.zeros(0, dtype=np.float32)

    def _feedback(self, weights: dict[str, float], n_terms: int, n_docs: int = 5) -> dict[str, float]:
        """The ``n_terms`` words with the largest summed BM25 weight in the ``n_docs`` best articles (chunks where
        no article counts are stored), scaled to 1. BM25 weights carry idf, so common words rank low."""
        level = self.doc_level or self.chunk_level
        use_docs = self.doc_level is not None
        per_part = level.scores(weights, self.k1, self.b)
        best: list[tuple[float, int, int]] = []
        for p, scores in enumerate(per_part):
            top = np.argsort(-scores)[:n_docs]
            best += [(float(scores[i]), p, int(i)) for i in top if scores[i] > 0]
        best = sorted(best, reverse=True)[:n_docs]
        word_weight: dict[str, float] = {}
        for _, p, row in best:
            counts = self.parts[p][0]
            matrix = counts.docs if use_docs else counts.chunks
            assert matrix is not None
            lengths = counts.doc_len if use_docs else counts.chunk_len
            by_row = matrix.rows
            cols, tf = by_row.column(row)
            contribution = level.tfc(tf, np.full(len(tf), lengths[row], dtype=np.float32), self.k1, self.b)
            for col, value in zip(cols.tolist(), contribution.tolist(), strict=True):
                word = counts.words[col]
                if word not in weights:
                    word_weight[word] = word_weight.get(word, 0.0) + level.idf(word) * value
        ranked = sorted(((w, v) for w, v in word_weight.items() if v > 0), key=lambda x: (-x[1], x[0]))[:n_terms]
        if not ranked:
            return {}
        top_weight = ranked[0][1]
        return {w: v / top_weight for w, v in ranked}

    def scores(self, query: str, doc_weight: float = 0.0, expand_variants: bool = True,
               feedback_terms: int = 0, feedback_weight: float = 0.3) -> np.ndarray:
        """BM25 score of every chunk (in ``rowids`` order) for ``query``, with variant words at reduced weight.

        :param doc_weight: share of the score that comes from the chunk's whole article (0 = chunk only); both
            parts are scaled to [0, 1] by their maximum first.
        :param feedback_terms: pseudo-relevance feedback: add this many words that weigh most in the best
            articles for the query (0 = off), at ``feedback_weight`` of the query words' weight.
        """
        tokens = tokenize(query)
        known = [t for t in tokens if self.chunk_level.df(t) > 0]
        weights = dict.fromkeys(known, 1.0)
        if expand_variants:
            for variant in {v for t in tokens for v in self.variants(t)} - set(known):
                weights[variant] = VARIANT_WEIGHT
        if feedback_terms > 0 and weights:
            for word, w in self._feedback(weights, feedback_terms).items():
                weights[word] = feedback_weight * w
        chunk_scores = self._concat(self.chunk_level.scores(weights, self.k1, self.b))
        if doc_weight <= 0 or self.doc_level is None or not weights:
            return chunk_scores
        doc_scores = self._concat(self.doc_level.scores(weights, self.k1, self.b))[self.doc_of_chunk]
        top_chunk, top_doc = float(chunk_scores.max(initial=0.0)), float(doc_scores.max(initial=0.0))
        if top_chunk <= 0 or top_doc <= 0:
            return chunk_scores
        mixed = (1 - doc_weight) * chunk_scores / top_chunk + doc_weight * doc_scores / top_doc
        return np.asarray(mixed, dtype=np.float32)

    def positions(self, rowids: list[int] | np.ndarray) -> np.ndarray:
        """Each chunk's position in ``rowids`` order (-1 for a row id no segment holds, or a deleted one)."""
        wanted = np.asarray(rowids, dtype=np.int64)
        out = np.full(len(wanted), -1, dtype=np.int64)
        for (counts, live, _), offset in zip(self.parts, self._chunk_offsets, strict=False):
            at = counts.positions(wanted)
            if live is not None:
                at = np.where((at >= 0) & live[np.maximum(at, 0)], at, -1) if len(live) else at
            out = np.where(at >= 0, at + offset, out)
        return out

    def doc_positions(self, rowids: list[int]) -> np.ndarray:
        """The article position (across segments) of each chunk.

        :raises KeyError: for a row id this index does not hold.
        """
        at = self.positions(rowids)
        if (at < 0).any():
            raise KeyError(f"chunks not in the BM25 index: {np.asarray(rowids)[at < 0][:5].tolist()}")
        return np.asarray(self.doc_of_chunk[at], dtype=np.int64)

    def scores_of(self, scores: np.ndarray, rowids: list[int]) -> np.ndarray:
        """The given chunks' scores in a ``scores`` array (0 for a row id this index does not hold)."""
        at = self.positions(rowids)
        return np.where(at >= 0, scores[np.maximum(at, 0)] if len(scores) else 0.0, 0.0).astype(np.float32)

    def search(self, query: str, top_k: int, allowed: np.ndarray | None = None,
               scores: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``top_k`` chunks with the highest BM25 score (> 0), optionally only among ``allowed`` row ids."""
        if scores is None:
            scores = self.scores(query)
        if allowed is not None:
            scores = np.where(np.isin(self.rowids, allowed), scores, 0.0)
        k = min(top_k, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.rowids[i]), float(scores[i])) for i in top if scores[i] > 0]
