"""A consistent read-only view of the data directory for one request: the segments of one generation, their
tombstones, and everything retrieval asks of them (``index.retrieval.SearchSnapshot``).

Every search reads each live segment: BM25 over all of them at once with collection statistics summed across them
(``lexical.LexicalIndex``), FAISS per segment with its deleted chunks excluded, the best hits merged; documents,
sentences and passages come from the SQLite store of the segment that holds them live.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from index.errors import DocumentNotFound
from index.local.lexical import LexicalIndex
from index.local.segment import Segment, SegmentView
from index.models import Document, Filters, Manifest, Passage, Sentence
from index.retrieval import Candidates, RetrievalOptions, gather_candidates

__all__ = ["LexicalQuery", "Snapshot", "row_to_document"]


def row_to_document(row: sqlite3.Row) -> Document:
    return Document(id=row["id"], title=row["title"], text=row["text"], source=row["source"],
                    published=date.fromisoformat(row["published"]) if row["published"] else None,
                    url=row["url"], n_chunks=row["n_chunks"])


@dataclass(frozen=True)
class LexicalQuery:
    """One query's BM25 scores over a generation: its best chunks, and the score of any chunk."""

    lexical: LexicalIndex
    query: str
    all_scores: np.ndarray

    def search(self, top_k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        return self.lexical.search(self.query, top_k, allowed, scores=self.all_scores)

    def scores(self, rowids: list[int]) -> np.ndarray:
        return self.lexical.scores_of(self.all_scores, rowids)


@dataclass
class Snapshot:
    """One immutable generation of the data directory, safe to query from many threads."""

    path: Path
    manifest: Manifest
    views: list[SegmentView]
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    lexical: LexicalIndex = field(init=False)

    def __post_init__(self) -> None:
        self.lexical = LexicalIndex(
            [(v.segment.counts, v.live_chunks if v.deleted else None, v.live_docs if v.deleted else None)
             for v in self.views], k1=self.bm25_k1, b=self.bm25_b)

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        """A generation opened on its own (tools and benchmarks; the service goes through ``Store.snapshot``)."""
        manifest = Manifest.model_validate_json((path / "manifest.json").read_text(encoding="utf-8"))
        segments = path.parent / "segments"
        return cls(path=path, manifest=manifest,
                   views=[SegmentView(Segment(segments / ref.name), frozenset(ref.deleted))
                          for ref in manifest.segments])

    # --- where a document or chunk lives -------------------------------------------------------------------
    def _view_of(self, doc_id: str) -> SegmentView | None:
        return next((v for v in self.views if v.holds(doc_id)), None)

    def _by_segment(self, rowids: Sequence[int] | np.ndarray) -> Iterator[tuple[SegmentView, np.ndarray]]:
        """(segment, indexes into ``rowids``) for the live chunks each segment holds."""
        wanted = np.asarray(rowids, dtype=np.int64)
        for view in self.views:
            at = view.segment.counts.positions(wanted)
            found = at >= 0
            if view.deleted and found.any():
                found &= view.live_chunks[np.maximum(at, 0)]
            if found.any():
                yield view, np.flatnonzero(found)

    # --- documents -----------------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document:
        """The stored document, with its cleaned text."""
        view = self._view_of(doc_id)
        if view is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}")
        return row_to_document(view.segment.query("SELECT * FROM documents WHERE id = ?", (doc_id,))[0])

    def has_document(self, doc_id: str) -> bool:
        return self._view_of(doc_id) is not None

    def documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        """Stored documents in id order, without their text (``text`` is empty)."""
        per_segment = []
        for view in self.views:
            rows = view.segment.query("SELECT id, title, '' AS text, source, published, url, n_chunks FROM documents "
                                      "ORDER BY id LIMIT ?", (limit + offset + len(view.deleted),))
            per_segment.append([row_to_document(r) for r in rows if r["id"] not in view.deleted])
        merged = heapq.merge(*per_segment, key=lambda d: d.id)
        return [d for i, d in enumerate(merged) if i >= offset][:limit]

    def chunk_spans(self) -> dict[int, tuple[str, int, int]]:
        """Every chunk's (document id, start, end), by row id: one lookup table for bulk evaluation."""
        spans: dict[int, tuple[str, int, int]] = {}
        for view in self.views:
            spans.update({r[0]: (r[1], r[2], r[3]) for r in view.segment.query(
                "SELECT rowid, doc_id, start, end FROM chunks") if r[1] not in view.deleted})
        return spans

    def sentences(self, doc_id: str) -> list[Sentence]:
        view = self._view_of(doc_id)
        if view is None:
            return []
        rows = view.segment.query("SELECT start, end FROM sentences WHERE doc_id = ? ORDER BY seq", (doc_id,))
        return [Sentence(start=r["start"], end=r["end"]) for r in rows]

    # --- search --------------------------------------------------------------------------------------
    def _allowed_rowids(self, filters: Filters) -> np.ndarray:
        where: list[str] = []
        params: list[object] = []
        if filters.sources:
            where.append(f"d.source IN ({','.join('?' * len(filters.sources))})")
            params.extend(filters.sources)
        if filters.doc_ids:
            where.append(f"d.id IN ({','.join('?' * len(filters.doc_ids))})")
            params.extend(filters.doc_ids)
        if filters.published_from:
            where.append("d.published >= ?")
            params.append(filters.published_from.isoformat())
        if filters.published_to:
            where.append("d.published <= ?")
            params.append(filters.published_to.isoformat())
        found = []
        for view in self.views:
            rows = view.segment.query("SELECT c.rowid, c.doc_id FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                      "WHERE " + " AND ".join(where), params)
            found += [r[0] for r in rows if r[1] not in view.deleted]
        return np.array(sorted(found), dtype=np.int64)

    def allowed_rowids(self, filters: Filters | None) -> np.ndarray | None:
        """Row ids of the chunks that pass ``filters``, or None when there is no restriction."""
        if filters is None or filters.is_empty():
            return None
        return self._allowed_rowids(filters)

    def candidates(self, query: str, vector: np.ndarray, allowed: np.ndarray | None,
                   options: RetrievalOptions) -> Candidates:
        """Both signals' candidates, gathered from the in-process indexes call by call."""
        return gather_candidates(self, query, vector, allowed, options)

    def dense_search(self, vector: np.ndarray, top_k: int, allowed: np.ndarray | None = None
                     ) -> list[tuple[int, float]]:
        """(rowid, cosine) of the ``top_k`` nearest chunks, optionally only among ``allowed`` row ids."""
        if allowed is not None and allowed.size == 0:
            return []
        hits: list[tuple[int, float]] = []
        for view in self.views:
            seg = view.segment
            if seg.index.ntotal == 0 or view.n_live_chunks == 0:
                continue
            mine = None
            if allowed is not None:
                mine = allowed[seg.counts.positions(allowed) >= 0]
                if not mine.size:
                    continue
            scores, ids = seg.search(vector, top_k, mine,
                                     excluded=view.dead_rowids if mine is None and view.deleted else None)
            hits += [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]
        return sorted(hits, key=lambda h: -h[1])[:top_k]

    def lexical_query(self, query: str, doc_weight: float = 0.0, feedback_terms: int = 0,
                      feedback_weight: float = 0.3) -> LexicalQuery:
        """BM25 for ``query`` over this generation (every live chunk of every segment scored at once)."""
        scores = self.lexical.scores(query, doc_weight=doc_weight, feedback_terms=feedback_terms,
                                     feedback_weight=feedback_weight)
        return LexicalQuery(self.lexical, query, scores)

    def article_dense(self, rowids: list[int], vector: np.ndarray) -> np.ndarray | None:
        """Cosine of each chunk's article centroid to ``vector``."""
        out = np.zeros(len(rowids), dtype=np.float32)
        wanted = np.asarray(rowids, dtype=np.int64)
        for view, idx in self._by_segment(wanted):
            counts = view.segment.counts
            docs = counts.doc_of_chunk[counts.positions(wanted[idx])]
            out[idx] = np.asarray(view.segment.doc_vectors[docs] @ vector, dtype=np.float32)
        return out

    def vectors(self, rowids: list[int]) -> np.ndarray:
        """The stored vectors of the given chunks. shape: (len(rowids), dimension)"""
        out = np.zeros((len(rowids), self.manifest.dimension), dtype=np.float32)
        wanted = np.asarray(rowids, dtype=np.int64)
        for view, idx in self._by_segment(wanted):
            out[idx] = view.segment.vectors_of(wanted[idx])
        return out

    def passages(self, scored: list[tuple[int, float]]) -> list[tuple[int, Passage]]:
        """(rowid, passage) for (rowid, score) pairs, in the given order: chunk text with article metadata."""
        if not scored:
            return []
        by_id: dict[int, sqlite3.Row] = {}
        wanted = np.array([r for r, _ in scored], dtype=np.int64)
        for view, idx in self._by_segment(wanted):
            ids = [int(r) for r in wanted[idx]]
            rows = view.segment.query(
                "SELECT c.rowid AS rid, c.chunk_id, c.doc_id, c.start, c.end, d.title, d.source, d.published, d.url,"
                " substr(d.text, c.start + 1, c.end - c.start) AS text FROM chunks c JOIN documents d ON "
                f"d.id = c.doc_id WHERE c.rowid IN ({','.join('?' * len(ids))})", ids)
            by_id.update({r["rid"]: r for r in rows})
        return [(rid, Passage(doc_id=r["doc_id"], chunk_id=r["chunk_id"], title=r["title"], source=r["source"],
                              published=date.fromisoformat(r["published"]) if r["published"] else None,
                              url=r["url"], text=r["text"], start=r["start"], end=r["end"], score=score))
                for rid, score in scored if (r := by_id.get(rid)) is not None]
