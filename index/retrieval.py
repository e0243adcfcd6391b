"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates fused into one ranking, near-duplicates grouped.

Both signals are computed for every candidate either side found (BM25 scores all chunks at once; a dense-only
candidate's vector is read back from FAISS), then combined:

- ``weighted`` (default): ``alpha * dense + (1 - alpha) * lexical``, each min-max normalised over the candidates;
  ``alpha`` was tuned on dev splits (SciFact train queries, NewsQA dev half; see ``benchmarks/``);
- ``rrf``: reciprocal-rank fusion, ``sum 1 / (60 + rank)``;
- ``dense`` or ``lexical`` alone, for comparison.

An optional recency factor favours newer articles. Passages that repeat one another (the same wire story in two
outlets, a paragraph in two versions of an article) are grouped: the best-ranked copy stays, and the others'
articles are listed in its ``also_in`` so an answer can say "reported by A and B".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from index.models import Filters, Passage, SignalScores, SourceRef

__all__ = ["Candidates", "Fusion", "LexicalSide", "RetrievalOptions", "SearchSnapshot", "gather_candidates",
           "rank_chunks", "retrieve"]

Fusion = Literal["weighted", "rrf", "dense", "lexical"]
_SHINGLE_WORD = re.compile(r"\w+")


class LexicalSide(Protocol):
    """One query's lexical scores (``index.local.store.LexicalQuery``, ``index.postgres.store.PgLexicalQuery``)."""

    def search(self, top_k: int, allowed: Any = None) -> list[tuple[int, float]]: ...

    def scores(self, rowids: list[int]) -> np.ndarray: ...


class SearchSnapshot(Protocol):
    """What retrieval needs of a backend's snapshot (a data directory's or PostgreSQL's). ``allowed`` is whatever
    the backend's ``allowed_rowids`` returns for the filters: row ids for FAISS, a SQL condition for PostgreSQL."""

    def allowed_rowids(self, filters: Filters | None) -> Any: ...

    def dense_search(self, vector: np.ndarray, top_k: int, allowed: Any = None) -> list[tuple[int, float]]: ...

    def lexical_query(self, query: str, doc_weight: float = 0.0, feedback_terms: int = 0,
                      feedback_weight: float = 0.3) -> LexicalSide: ...

    def vectors(self, rowids: list[int]) -> np.ndarray: ...

    def article_dense(self, rowids: list[int], vector: np.ndarray) -> np.ndarray | None: ...

    def passages(self, scored: list[tuple[int, float]]) -> list[tuple[int, Passage]]: ...

    def candidates(self, query: str, vector: np.ndarray, allowed: Any, options: RetrievalOptions) -> Candidates:
        """Both signals' candidates with every score fusion needs: ``gather_candidates`` over the calls above, or
        one request where the backend can gather them at once (PostgreSQL)."""
        ...


class RetrievalOptions(BaseModel):
    """How to rank; defaults are the tuned ones."""

    fusion: Fusion = "weighted"
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Weight of the dense signal in 'weighted'.")
    doc_weight: float = Field(default=0.0, ge=0.0, le=1.0,
                              description="Share of a chunk's lexical score taken from its whole article.")
    dense_doc_weight: float = Field(default=0.0, ge=0.0, le=1.0,
                                    description="Share of a chunk's dense score taken from its article's centroid.")
    feedback_terms: int = Field(default=0, ge=0, le=100,
                                description="Pseudo-relevance feedback words added to the BM25 query (0 = off).")
    feedback_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    candidates: int = Field(default=100, ge=1, le=2000, description="Candidates taken from each signal.")
    rrf_k: int = Field(default=60, ge=1)
    group_duplicates: bool = True
    duplicate_jaccard: float = Field(default=0.6, ge=0.0, le=1.0,
                                     description="Word 3-gram overlap above which two passages are copies.")
    recency_half_life_days: float | None = Field(default=None, gt=0)
    recency_weight: float = Field(default=0.0, ge=0.0, le=1.0)


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    return np.zeros_like(values) if high - low < 1e-9 else (values - low) / (high - low)


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _SHINGLE_WORD.findall(text.casefold())
    return {tuple(words[i:i + 3]) for i in range(max(1, len(words) - 2))}


def _similar(a: set[tuple[str, ...]], b: set[tuple[str, ...]], threshold: float) -> bool:
    """Jaccard(a, b) >= threshold; the size ratio bounds Jaccard, so most pairs are settled without a set operation."""
    small, large = sorted((len(a), len(b)))
    if small < threshold * large:
        return False
    common = len(a & b)
    return common / max(1, len(a) + len(b) - common) >= threshold


def _recency(published: date | None, half_life_days: float, today: date) -> float:
    if published is None:
        return 0.5  # undated articles count as neither new nor old
    age = max(0, (today - published).days)
    return float(0.5 ** (age / half_life_days))


@dataclass
class Candidates:
    """The union of both signals' candidates with every score fusion needs, in ``rowids`` order."""

    rowids: list[int]
    dense: np.ndarray  # cosine to the query
    lexical: np.ndarray  # BM25 (article-mixed when asked)
    article: np.ndarray | None  # cosine of each chunk's article centroid, when dense_doc_weight asks for it
    dense_hits: list[tuple[int, float]]  # each signal's own ranking (RRF needs the ranks)
    lexical_hits: list[tuple[int, float]]


def gather_candidates(snap: SearchSnapshot, query: str, vector: np.ndarray, allowed: Any,
                      options: RetrievalOptions) -> Candidates:
    """Both signals' candidates and their scores through the snapshot's primitives: a request for each (cheap in
    memory; a backend behind a network answers ``candidates`` in one statement instead)."""
    n = options.candidates
    dense_hits = snap.dense_search(vector, n, allowed) if options.fusion != "lexical" else []
    lex = snap.lexical_query(query, doc_weight=options.doc_weight, feedback_terms=options.feedback_terms,
                             feedback_weight=options.feedback_weight)
    lex_hits = lex.search(n, allowed) if options.fusion != "dense" else []
    rowids = list(dict.fromkeys([r for r, _ in dense_hits] + [r for r, _ in lex_hits]))
    dense_of = dict(dense_hits)
    missing = [r for r in rowids if r not in dense_of]
    if missing:
        dense_of.update(zip(missing, (snap.vectors(missing) @ vector).tolist(), strict=True))
    dense = np.array([dense_of[r] for r in rowids], dtype=np.float32)
    article = snap.article_dense(rowids, vector) if rowids and options.dense_doc_weight > 0 else None
    lexical = lex.scores(rowids) if rowids else np.zeros(0, dtype=np.float32)
    return Candidates(rowids, dense, lexical, article, dense_hits, lex_hits)


def rank_chunks(snap: SearchSnapshot, query: str, vector: np.ndarray, allowed: Any,
                options: RetrievalOptions) -> list[tuple[int, float, float, float]]:
    """(rowid, fused, dense, lexical) for the union of both signals' candidates, best first."""
    found = snap.candidates(query, vector, allowed, options)
    rowids = found.rowids
    if not rowids:
        return []
    dense, lexical = found.dense, found.lexical
    if found.article is not None:
        dense = np.asarray((1 - options.dense_doc_weight) * dense + options.dense_doc_weight * found.article,
                           dtype=np.float32)
    if options.fusion == "dense":
        fused = dense
    elif options.fusion == "lexical":
        fused = lexical
    elif options.fusion == "rrf":
        fused = np.zeros(len(rowids), dtype=np.float32)
        position = {r: i for i, r in enumerate(rowids)}
        for hits in (found.dense_hits, found.lexical_hits):
            for rank, (r, _) in enumerate(hits, start=1):
                fused[position[r]] += 1.0 / (options.rrf_k + rank)
    else:
        fused = (options.alpha * _minmax(dense) + (1.0 - options.alpha) * _minmax(lexical)).astype(np.float32)
    order = np.argsort(-fused, kind="stable")
    return [(rowids[i], float(fused[i]), float(dense[i]), float(lexical[i])) for i in order]


def retrieve(snap: SearchSnapshot, query: str, vector: np.ndarray, top_k: int, filters: Filters | None = None,
             options: RetrievalOptions | None = None, explain: bool = False) -> list[Passage]:
    """The ``top_k`` best passages for a query, by the fused ranking, near-duplicates grouped.

    :param snap: the generation to search (one consistent snapshot).
    :param query: the query text (for BM25).
    :param vector: the query's unit-length embedding (for FAISS).
    :param top_k: how many passages (groups) to return.
    :param filters: metadata restrictions, applied before ranking on both signals.
    :param options: fusion and grouping settings; tuned defaults when None.
    :param explain: attach each signal's score to every passage.
    """
    options = options or RetrievalOptions()
    allowed = snap.allowed_rowids(filters)
    ranked = rank_chunks(snap, query, vector, allowed, options)
    # Read enough candidates to fill top_k groups even when copies are folded away.
    fetched = snap.passages([(r, f) for r, f, _, _ in ranked[: max(top_k * 4, top_k + 20)]])
    passages = [p for _, p in fetched]
    signals = {r: (d, lex) for r, _, d, lex in ranked}
    rowid_of = {p.chunk_id: r for r, p in fetched}
    recency_of: dict[str, float] = {}
    if options.recency_half_life_days and options.recency_weight > 0:
        today = datetime.now(UTC).date()
        w = options.recency_weight
        for p in passages:
            recency_of[p.chunk_id] = _recency(p.published, options.recency_half_life_days, today)
            p.score *= (1 - w) + w * recency_of[p.chunk_id]
        passages.sort(key=lambda p: p.score, reverse=True)
    kept: list[tuple[Passage, set[tuple[str, ...]]]] = []
    for p in passages:
        shingles = _shingles(p.text)
        copy_of = None
        if options.group_duplicates:
            copy_of = next((k for k, s in kept if _similar(shingles, s, options.duplicate_jaccard)), None)
        if copy_of is not None:
            if p.doc_id != copy_of.doc_id and p.doc_id not in {a.doc_id for a in copy_of.also_in}:
                copy_of.also_in.append(SourceRef(doc_id=p.doc_id, title=p.title, source=p.source,
                                                 published=p.published, url=p.url))
            continue
        if len(kept) < top_k:
            kept.append((p, shingles))
    result = [p for p, _ in kept]
    if explain:
        for p in result:
            dense, lexical = signals[rowid_of[p.chunk_id]]
            p.scores = SignalScores(dense=dense, lexical=lexical, fused=p.score, recency=recency_of.get(p.chunk_id))
    return result
