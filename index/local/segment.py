"""One immutable segment of the data directory: a batch of articles with everything a search reads over them.

Layout of ``segments/seg-<id>/``::

    segment.json    counts, dimension, and the sha256 of every other file (written last, vouches for the rest)
    store.sqlite    documents (with their position in the segment), sentences, chunks (global row ids)
    index.faiss     the chunks' vectors, ids = row ids (flat, or IVF for a large merged segment)
    candidates.faiss  only for large IVF segments: 4-bit codes that pick candidates (``ann.fit_candidates``)
    lexical/        term counts of every chunk and article (``lexical.TermCounts``)
    doc_vectors.npy article centroids, rows in document position order

A segment is written once, in a temporary directory that is fsynced and renamed into place, and never changed:
deleting or replacing one of its articles is a tombstone in the generation that stops using it (``store.py``).
Merging writes a new segment from the live articles of several, reusing their term counts and vectors (no
tokenizing or embedding again), as Lucene merges its segments.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import cast

import faiss
import numpy as np
from pydantic import BaseModel, Field

from index.checksum import sha256_file
from index.local import ann
from index.local.mapped import advise_random, advise_random_file
from index.local.term_counts import TermCounts
from index.models import Chunk, Document, Sentence
from index.tokens import tokenize

__all__ = ["Segment", "SegmentInfo", "SegmentView", "build_segment", "fsync_path", "merge_segments",
           "new_segment_name"]

logger = logging.getLogger(__name__)

NUMPY_SEARCH_MAX = 10_000  # exact segments up to this many chunks are searched with numpy (``Segment.search``)

SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, pos INTEGER NOT NULL UNIQUE, title TEXT NOT NULL, text TEXT NOT NULL, source TEXT,
    published TEXT, url TEXT, n_chunks INTEGER NOT NULL, added_at TEXT NOT NULL);
CREATE INDEX documents_source ON documents(source);
CREATE INDEX documents_published ON documents(published);
CREATE TABLE sentences (doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    PRIMARY KEY (doc_id, seq)) WITHOUT ROWID;
CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL);
CREATE INDEX chunks_doc ON chunks(doc_id);
"""
_DOC_COLUMNS = "id, pos, title, text, source, published, url, n_chunks, added_at"


class SegmentInfo(BaseModel):
    """What a segment holds; its checksums cover every other file of the segment."""

    name: str
    n_documents: int
    n_chunks: int
    dimension: int
    created_at: str
    made_by: str = Field(description="'write', 'merge' or 'rebuild'")
    checksums: dict[str, str] = Field(default_factory=dict)


@dataclass
class SegmentDoc:
    """One article to put in a new segment, with its chunks' row ids and vectors."""

    document: Document
    sentences: list[Sentence]
    chunks: list[Chunk]
    vectors: np.ndarray
    rowids: np.ndarray
    added_at: str


def new_segment_name() -> str:
    """Unique without coordination, so a merge can name its segment while writes go on."""
    return f"seg-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"


def fsync_path(path: Path) -> None:
    """Make a file's or a directory's contents (a directory: its entries) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _centroids(vectors: np.ndarray, doc_of_chunk: np.ndarray, n_docs: int) -> np.ndarray:
    """The mean of each article's chunk vectors, re-normalised: the article as a whole, for dense context."""
    centroids = np.zeros((n_docs, vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, doc_of_chunk, vectors)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids / np.where(norms > 0, norms, 1.0)


def _finish(tmp: Path, final: Path, info: SegmentInfo, counts: TermCounts, ids: np.ndarray, vectors: np.ndarray,
            doc_vectors: np.ndarray, settings: ann.AnnSettings, checkpoint: Callable[[str], None]) -> SegmentInfo:
    """Write the indexes of a segment whose SQLite store is in ``tmp``, make it durable, and move it into place."""
    counts.save(tmp / "lexical")
    checkpoint("segment-lexical-written")
    index: faiss.Index = ann.new_exact_index(info.dimension)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    index = ann.fit_index(index, settings)
    faiss.write_index(index, str(tmp / "index.faiss"))
    candidates = ann.fit_candidates(index, settings)
    if candidates is not None:
        faiss.write_index(candidates, str(tmp / "candidates.faiss"))
    np.save(tmp / "doc_vectors.npy", doc_vectors.astype(np.float32))
    checkpoint("segment-faiss-written")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    info.checksums = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}
    (tmp / "segment.json").write_text(info.model_dump_json(indent=2), encoding="utf-8")
    for path in [*files, tmp / "segment.json", tmp / "lexical", tmp]:
        fsync_path(path)
    checkpoint("segment-synced")
    tmp.rename(final)
    fsync_path(final.parent)
    checkpoint("segment-renamed")
    return info


def _tmp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    return tmp


def build_segment(segments_dir: Path, name: str, docs: Sequence[SegmentDoc], dimension: int,
                  settings: ann.AnnSettings, made_by: str = "write",
                  checkpoint: Callable[[str], None] = lambda step: None) -> SegmentInfo:
    """A new segment holding ``docs`` (in that order), tokenized and indexed; returns its description."""
    final = segments_dir / name
    tmp = _tmp_dir(final)
    try:
        db = sqlite3.connect(tmp / "store.sqlite")
        db.executescript(SCHEMA)
        for pos, item in enumerate(docs):
            doc = item.document
            db.execute(f"INSERT INTO documents ({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (doc.id, pos, doc.title, doc.text, doc.source,
                        doc.published.isoformat() if doc.published else None, doc.url, len(item.chunks),
                        item.added_at))
            db.executemany("INSERT INTO sentences VALUES (?, ?, ?, ?)",
                           [(doc.id, i, s.start, s.end) for i, s in enumerate(item.sentences)])
            db.executemany("INSERT INTO chunks (rowid, chunk_id, doc_id, seq, start, end) VALUES (?, ?, ?, ?, ?, ?)",
                           [(int(r), c.chunk_id, c.doc_id, c.seq, c.start, c.end)
                            for r, c in zip(item.rowids, item.chunks, strict=True)])
        db.commit()
        db.close()
        checkpoint("segment-sqlite-written")
        rowids = np.concatenate([d.rowids for d in docs]).astype(np.int64) if docs else np.zeros(0, np.int64)
        vectors = np.concatenate([d.vectors for d in docs]).astype(np.float32) if docs \
            else np.zeros((0, dimension), np.float32)
        doc_of_chunk = np.repeat(np.arange(len(docs), dtype=np.int64), [len(d.chunks) for d in docs])
        order = np.argsort(rowids, kind="stable")  # chunks in row id order, as a merge leaves them
        counts = TermCounts.from_tokens(
            [tokenize(f"{d.document.title}. {c.text}") for d in docs for c in d.chunks], rowids,
            [tokenize(f"{d.document.title}. {d.document.text}") for d in docs], doc_of_chunk)
        if not np.array_equal(order, np.arange(len(order))):
            counts = TermCounts.merge([(counts, np.ones(len(rowids), bool), np.ones(len(docs), bool))], order)
        info = SegmentInfo(name=name, n_documents=len(docs), n_chunks=len(rowids), dimension=dimension,
                           created_at=datetime.now(UTC).isoformat(timespec="seconds"), made_by=made_by)
        return _finish(tmp, final, info, counts, rowids, vectors, _centroids(vectors, doc_of_chunk, len(docs)),
                       settings, checkpoint)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def merge_segments(segments_dir: Path, name: str, views: Sequence[SegmentView], settings: ann.AnnSettings,
                   checkpoint: Callable[[str], None] = lambda step: None) -> SegmentInfo:
    """A new segment holding the live articles of ``views``: their rows copied in SQLite, their term counts and
    vectors combined (nothing tokenized or embedded again), deleted articles left out."""
    if not views:
        raise ValueError("nothing to merge")
    final = segments_dir / name
    tmp = _tmp_dir(final)
    try:
        db = sqlite3.connect(tmp / "store.sqlite")
        db.executescript(SCHEMA)
        db.execute("CREATE TEMP TABLE live (id TEXT PRIMARY KEY, pos INTEGER NOT NULL)")
        n_docs = 0
        for i, view in enumerate(views):
            seg = view.segment
            live_ids = [seg.doc_ids[p] for p in np.flatnonzero(view.live_docs)]
            db.execute("DELETE FROM temp.live")
            db.executemany("INSERT INTO temp.live VALUES (?, ?)", [(d, n_docs + k) for k, d in enumerate(live_ids)])
            db.execute(f"ATTACH DATABASE ? AS src{i}", (f"file:{seg.path / 'store.sqlite'}?mode=ro",))
            db.execute(f"INSERT INTO documents ({_DOC_COLUMNS}) SELECT d.id, l.pos, d.title, d.text, d.source, "
                       f"d.published, d.url, d.n_chunks, d.added_at FROM src{i}.documents d "
                       "JOIN temp.live l ON l.id = d.id")
            db.execute(f"INSERT INTO sentences SELECT s.* FROM src{i}.sentences s JOIN temp.live l ON l.id = s.doc_id")
            db.execute(f"INSERT INTO chunks SELECT c.* FROM src{i}.chunks c JOIN temp.live l ON l.id = c.doc_id")
            db.commit()
            db.execute(f"DETACH DATABASE src{i}")
            n_docs += len(live_ids)
        db.commit()
        db.close()
        checkpoint("segment-sqlite-written")
        rowids = np.concatenate([v.segment.counts.rowids[v.live_chunks] for v in views]) if views \
            else np.zeros(0, np.int64)
        order = np.argsort(rowids, kind="stable")
        counts = TermCounts.merge([(v.segment.counts, v.live_chunks, v.live_docs) for v in views], order)
        vectors = np.concatenate([v.segment.vectors_of(v.segment.counts.rowids[v.live_chunks])
                                  for v in views])[order]
        doc_vectors = np.concatenate([np.asarray(v.segment.doc_vectors)[v.live_docs] for v in views])
        info = SegmentInfo(name=name, n_documents=n_docs, n_chunks=len(rowids), dimension=views[0].segment.dimension,
                           created_at=datetime.now(UTC).isoformat(timespec="seconds"), made_by="merge")
        return _finish(tmp, final, info, counts, rowids[order], vectors, doc_vectors, settings, checkpoint)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Segment:
    """An opened segment, shared by every snapshot that uses it (it never changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.info = SegmentInfo.model_validate_json((path / "segment.json").read_text(encoding="utf-8"))
        self.dimension = self.info.dimension
        self.index = ann.load_for_queries(path / "index.faiss")
        advise_random_file(path / "index.faiss")  # read by id to re-rank and score candidates, not in order
        self.candidates = ann.load_for_queries(path / "candidates.faiss") \
            if (path / "candidates.faiss").is_file() else None
        self.counts = TermCounts.load(path / "lexical")
        self.doc_vectors = np.load(path / "doc_vectors.npy", mmap_mode="r")
        advise_random(self.doc_vectors)
        self._db = sqlite3.connect(f"file:{path / 'store.sqlite'}?mode=ro&immutable=1", uri=True,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @cached_property
    def doc_ids(self) -> list[str]:
        """Document ids by position (the rows of ``doc_vectors`` and of the article term counts)."""
        return [r[0] for r in self.query("SELECT id FROM documents ORDER BY pos")]

    @cached_property
    def doc_positions(self) -> dict[str, int]:
        return {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    @cached_property
    def _flat(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of a small exact segment, the vectors a view of FAISS's own (memory-mapped) storage: searched
        with one matrix product, without FAISS's set-up per call (0.1-0.4 ms, paid for every segment a search
        reads, which made small segments cost more than their vectors). Larger segments stay with FAISS."""
        concrete = faiss.downcast_index(self.index)
        if not isinstance(concrete, faiss.IndexIDMap2) or concrete.ntotal > NUMPY_SEARCH_MAX:
            return None
        inner = cast("faiss.IndexFlat", faiss.downcast_index(concrete.index))
        n, d = inner.ntotal, inner.d
        vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d) if n else np.zeros((0, d), np.float32)
        return faiss.vector_to_array(concrete.id_map).astype(np.int64), vectors

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None,
               excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest chunks here, only among ``allowed`` ids or never ``excluded`` ones."""
        flat = self._flat
        if flat is None:
            return ann.search(self.index, vector, k, allowed, candidates=self.candidates, excluded=excluded)
        ids, vectors = flat
        scores = vectors @ np.asarray(vector, dtype=np.float32)
        if allowed is not None:
            scores = np.where(np.isin(ids, allowed), scores, -np.inf)
        elif excluded is not None and excluded.size:
            scores = np.where(np.isin(ids, excluded), -np.inf, scores)
        k = min(k, len(ids))
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return scores[top].astype(np.float32), ids[top]

    def vectors_of(self, rowids: np.ndarray) -> np.ndarray:
        if not len(rowids):
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self.index.reconstruct_batch(np.ascontiguousarray(rowids, dtype=np.int64)),
                          dtype=np.float32)


@dataclass
class SegmentView:
    """A segment as one generation sees it: which of its articles are deleted there."""

    segment: Segment
    deleted: frozenset[str] = frozenset()
    live_docs: np.ndarray = field(init=False)
    live_chunks: np.ndarray = field(init=False)
    dead_rowids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        counts = self.segment.counts
        self.live_docs = np.ones(counts.n_docs, dtype=bool)
        if self.deleted:
            positions = self.segment.doc_positions
            self.live_docs[[positions[d] for d in self.deleted if d in positions]] = False
        self.live_chunks = self.live_docs[counts.doc_of_chunk] if counts.n_chunks else np.zeros(0, bool)
        self.dead_rowids = counts.rowids[~self.live_chunks]

    @property
    def n_live_docs(self) -> int:
        return int(self.live_docs.sum())

    @property
    def n_live_chunks(self) -> int:
        return int(self.live_chunks.sum())

    def holds(self, doc_id: str) -> bool:
        """Whether this article is live in this segment."""
        return doc_id not in self.deleted and doc_id in self.segment.doc_positions
