"""The lexical side of retrieval: BM25 over chunks (bm25s, Lucene scoring) with English stopwords and stemming,
plus spelling-variant expansion of query words against the corpus vocabulary.

The BM25 index is rebuilt inside every new generation of the data directory, from the same chunks as the FAISS
index, so the two can never disagree (see ``store.py``). Variant expansion lets a query spelled "Sednaya" also
match an article that writes "Saydnaya", and a small typo in a name still find it: a query word is matched to
corpus words that look alike (rapidfuzz ratio), which then count at a reduced weight.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz, process

from index.mapped import advise_random

if TYPE_CHECKING:
    import bm25s


@lru_cache(maxsize=1)
def _bm25s() -> ModuleType:
    """bm25s, imported at first use: it brings SciPy, ~0.2 s of import that `ask` through a running service (which
    imports this module only for the API's types) does not need."""
    import bm25s

    # bm25s sets its own logger to DEBUG when imported, so every index build printed "Building index from tokens"
    # past the application's WARNING level for libraries; NOTSET hands the decision back to the root logger's
    # configuration.
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    _bm25s()  # the package first, so its logger is reset
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


__all__ = ["LexicalIndex", "closest_variants", "may_have_variants", "term_counts", "tokenize"]

_WORD = re.compile(r"\w+", re.UNICODE)
VARIANT_MIN_CHARS = 5  # shorter words have too many look-alikes to expand safely
VARIANT_MIN_RATIO = 80.0  # "sednaya" ~ "saydnaya" scores 80; "report" ~ "resort" 83 but is caught by the df rule
VARIANT_WEIGHT = 0.8  # a variant counts a little less than the word as typed
VARIANT_MAX_DF = 0.01  # only rare corpus words (names, places) serve as variants


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def _fold(text: str) -> str:
    """Lower-case and strip accents, so "Sednaya", "SEDNAYA" and "Sédnaya" are one word."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Folded, stemmed content words of ``text`` (stopwords removed)."""
    stopwords = _stopwords()
    words = [w for w in _WORD.findall(_fold(text)) if w not in stopwords]
    return list(_stemmer().stemWords(words))


def term_counts(text: str) -> dict[str, int]:
    """How often each token of ``tokenize(text)`` occurs: what BM25 needs of a text (the postgres backend stores
    it as a tsvector)."""
    counts: dict[str, int] = {}
    for token in tokenize(text):
        counts[token] = counts.get(token, 0) + 1
    return counts


def may_have_variants(token: str, df: int, max_df: int) -> bool:
    """Whether a query word is worth expanding: long, alphabetic, and not common in the corpus (a word the corpus
    uses often is taken as correctly spelled)."""
    return len(token) >= VARIANT_MIN_CHARS and token.isalpha() and df <= max_df


def closest_variants(token: str, choices: list[str]) -> list[str]:
    """Up to three of ``choices`` spelled like ``token`` (rapidfuzz ratio >= 80), best first."""
    found = process.extract(token, choices, scorer=fuzz.ratio, score_cutoff=VARIANT_MIN_RATIO, limit=3)
    return [w for w, _, _ in found if w != token]


def _weighted_scores(bm25: bm25s.BM25, weights: dict[str, float]) -> np.ndarray:
    """Sum of each word's BM25 scores times its weight (words unknown to this index are skipped)."""
    result = np.zeros(bm25.scores["num_docs"], dtype=np.float32)
    vocab = bm25.vocab_dict
    by_weight: dict[float, list[str]] = {}
    for word, weight in weights.items():
        if word in vocab:
            by_weight.setdefault(weight, []).append(word)
    for weight, words in by_weight.items():
        result += weight * bm25.get_scores(words)
    return result


def _feedback(bm25: bm25s.BM25, words_by_id: list[str], scores: np.ndarray, n_terms: int,
              exclude: dict[str, float], n_docs: int = 5) -> dict[str, float]:
    """The ``n_terms`` words with the largest summed BM25 weight in the ``n_docs`` best documents, scaled to 1.

    BM25 weights already carry idf, so common words rank low without a stop list. The index is stored
    token-major (CSC: indptr over words, indices = documents), so one pass over it sums every word at once.
    """
    top_docs = np.argsort(-scores)[:n_docs]
    top_docs = top_docs[scores[top_docs] > 0]
    if top_docs.size == 0:
        return {}
    data, indices, indptr = bm25.scores["data"], bm25.scores["indices"], bm25.scores["indptr"]
    contribution = np.concatenate([[0.0], np.cumsum(np.where(np.isin(indices, top_docs), data, 0.0))])
    word_weight = contribution[indptr[1:]] - contribution[indptr[:-1]]
    for word in exclude:
        if word in bm25.vocab_dict:
            word_weight[bm25.vocab_dict[word]] = 0.0
    best = np.argsort(-word_weight)[:n_terms]
    best = best[word_weight[best] > 0]
    if best.size == 0:
        return {}
    top = float(word_weight[best[0]])
    return {words_by_id[int(i)]: float(word_weight[i]) / top for i in best}


class LexicalIndex:
    """BM25 over a fixed set of chunks, addressed by the chunks' row ids.

    Usage::

        lexical = LexicalIndex.build(["Saydnaya prison ...", ...], rowids=np.array([1, ...]))
        lexical.search("Sednaya prison", top_k=10)   # [(rowid, score), ...]
    """

    def __init__(self, bm25: bm25s.BM25 | None, rowids: np.ndarray, doc_freq: dict[str, int],
                 doc_bm25: bm25s.BM25 | None = None, doc_of_chunk: np.ndarray | None = None) -> None:
        self.bm25 = bm25
        self.rowids = rowids
        self.doc_freq = doc_freq
        # Whole-article BM25: a chunk also scores by the article it belongs to (long stories match a query
        # across paragraphs that no single chunk holds). doc_of_chunk[i] = article position of chunk i.
        self.doc_bm25 = doc_bm25
        self.doc_of_chunk = doc_of_chunk if doc_of_chunk is not None else np.zeros(len(rowids), dtype=np.int64)
        self._feedback_source = doc_bm25 or bm25
        self._feedback_words: list[str] = []
        if self._feedback_source is not None:
            vocab = self._feedback_source.vocab_dict
            self._feedback_words = [""] * (max(vocab.values(), default=-1) + 1)
            for word, i in vocab.items():
                self._feedback_words[i] = word
        # Row id -> position by binary search over a sorted copy: a dict of 1M Python ints took ~100 MB.
        self._order = np.argsort(rowids, kind="stable")
        self._sorted = np.asarray(rowids, dtype=np.int64)[self._order]
        # Candidate variants: rare, alphabetic corpus words, grouped by first letter (transliterations of a
        # name keep it: Saydnaya/Sednaya), so a lookup scans a small list.
        self._max_df = max(2, int(VARIANT_MAX_DF * len(rowids)))
        self._rare_by_initial: dict[str, list[str]] = {}
        for word, df in doc_freq.items():
            if df <= self._max_df and len(word) >= VARIANT_MIN_CHARS and word.isalpha():
                self._rare_by_initial.setdefault(word[0], []).append(word)

    @classmethod
    def build(cls, texts: list[str], rowids: np.ndarray, doc_texts: list[str] | None = None,
              doc_of_chunk: np.ndarray | None = None, k1: float = 1.2, b: float = 0.75) -> LexicalIndex:
        """Index ``texts`` (one per chunk, in the order of ``rowids``) and, if given, whole articles.

        :param doc_texts: full article texts; ``doc_of_chunk[i]`` is the article of chunk ``i``.
        """
        tokens = [tokenize(t) for t in texts]
        doc_freq: dict[str, int] = {}
        for toks in tokens:
            for tok in set(toks):
                doc_freq[tok] = doc_freq.get(tok, 0) + 1
        if not any(tokens):
            return cls(None, rowids, doc_freq)
        bm25 = _bm25s().BM25(k1=k1, b=b, method="lucene")
        bm25.index(tokens, show_progress=False)
        doc_bm25 = None
        if doc_texts:
            doc_bm25 = _bm25s().BM25(k1=k1, b=b, method="lucene")
            doc_bm25.index([tokenize(t) for t in doc_texts], show_progress=False)
        return cls(bm25, rowids.astype(np.int64), doc_freq, doc_bm25, doc_of_chunk)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "rowids.npy", self.rowids)
        (path / "doc_freq.json").write_text(json.dumps(self.doc_freq), encoding="utf-8")
        if self.bm25 is not None:
            self.bm25.save(str(path / "bm25"), show_progress=False)
        if self.doc_bm25 is not None:
            self.doc_bm25.save(str(path / "doc_bm25"), show_progress=False)
            np.save(path / "doc_of_chunk.npy", self.doc_of_chunk)

    @classmethod
    def load(cls, path: Path) -> LexicalIndex:
        rowids = np.load(path / "rowids.npy")
        doc_freq = json.loads((path / "doc_freq.json").read_text(encoding="utf-8"))
        bm25 = doc_bm25 = doc_of_chunk = None
        if (path / "bm25").is_dir():
            bm25 = _bm25s().BM25.load(str(path / "bm25"), mmap=True, show_progress=False)
        if (path / "doc_bm25").is_dir():
            doc_bm25 = _bm25s().BM25.load(str(path / "doc_bm25"), mmap=True, show_progress=False)
            doc_of_chunk = np.load(path / "doc_of_chunk.npy")
        for index in (bm25, doc_bm25):
            for array in (index.scores.values() if index is not None else ()):
                advise_random(array)
        return cls(bm25, rowids, doc_freq, doc_bm25, doc_of_chunk)

    def variants(self, token: str) -> list[str]:
        """Rare corpus words spelled like ``token`` (same first letter, rapidfuzz ratio >= 80), best first.

        A word the corpus uses often is taken as correctly spelled and gets no variants.
        """
        if not may_have_variants(token, self.doc_freq.get(token, 0), self._max_df):
            return []
        return closest_variants(token, self._rare_by_initial.get(token[0], []))

    def scores(self, query: str, doc_weight: float = 0.0, expand_variants: bool = True,
               feedback_terms: int = 0, feedback_weight: float = 0.3) -> np.ndarray:
        """BM25 score of every chunk (in ``rowids`` order) for ``query``, with variant words at reduced weight.

        :param doc_weight: share of the score that comes from the chunk's whole article (0 = chunk only); both
            parts are scaled to [0, 1] by their maximum first.
        :param feedback_terms: pseudo-relevance feedback: add this many words that weigh most in the best
            articles for the query (0 = off), at ``feedback_weight`` of the query words' weight.
        """
        if self.bm25 is None:
            return np.zeros(len(self.rowids), dtype=np.float32)
        tokens = tokenize(query)
        known = [t for t in tokens if t in self.doc_freq]
        weights = dict.fromkeys(known, 1.0)
        if expand_variants:
            for variant in {v for t in tokens for v in self.variants(t)} - set(known):
                weights[variant] = VARIANT_WEIGHT
        source = self._feedback_source
        if feedback_terms > 0 and weights and source is not None:
            initial = _weighted_scores(source, weights)
            for word, w in _feedback(source, self._feedback_words, initial, feedback_terms, weights).items():
                weights[word] = feedback_weight * w

        chunk_scores = _weighted_scores(self.bm25, weights)
        if doc_weight <= 0 or self.doc_bm25 is None:
            return chunk_scores
        doc_scores = _weighted_scores(self.doc_bm25, weights)[self.doc_of_chunk]
        top_chunk, top_doc = float(chunk_scores.max(initial=0.0)), float(doc_scores.max(initial=0.0))
        if top_chunk <= 0 or top_doc <= 0:
            return chunk_scores
        mixed = (1 - doc_weight) * chunk_scores / top_chunk + doc_weight * doc_scores / top_doc
        return np.asarray(mixed, dtype=np.float32)

    def positions(self, rowids: list[int] | np.ndarray) -> np.ndarray:
        """Each chunk's position in ``rowids`` order (-1 for a row id this index does not hold)."""
        wanted = np.asarray(rowids, dtype=np.int64)
        if not len(self._sorted):
            return np.full(len(wanted), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        return np.where(self._sorted[at] == wanted, self._order[at], -1).astype(np.int64)

    def doc_positions(self, rowids: list[int]) -> np.ndarray:
        """The article position (row of the article tables) of each chunk.

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
