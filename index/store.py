"""The data directory: a FAISS index and a SQLite store of documents, sentences and chunks, saved atomically.

Layout::

    data_dir/
      CURRENT           name of the live generation (replaced atomically, last step of every write)
      gen-000007/       one immutable generation
        manifest.json   model id, dimension, counts, format version
        store.sqlite    documents, sentences, chunks
        index.faiss     vectors, ids = chunks.rowid
        candidates.faiss  only for large IVF generations: 4-bit codes that pick candidates (``ann.fit_candidates``)
        lexical/        BM25 over the same chunks (rebuilt in every generation, so it always matches FAISS)
      .write.lock       serialises writers across processes

A write copies the live generation into a new directory, applies the change there, fsyncs it, and only then
points ``CURRENT`` at it. A crash or SIGKILL at any moment leaves ``CURRENT`` naming a complete generation:
the old one, or the new one, never a mix. Readers hold a ``Snapshot`` (one generation) for a whole query, so
they never see a half-applied write either.

FAISS choice: vectors are unit length, so inner product ranks by cosine. Small collections use an exact index
(``IndexFlatIP`` in ``IndexIDMap2``, so chunk rows can be removed when a document is replaced or deleted); large
ones an IVF index with fp16 (or 8-bit) codes whose recall is tuned at every publish (``ann.py``), searched
through a 4-bit candidate index from 200k chunks. Queries read the indexes memory-mapped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import faiss
import numpy as np

from index import ann
from index.checksum import sha256_file
from index.errors import DataDirError, DocumentNotFound, ModelMismatch
from index.lexical import LexicalIndex
from index.mapped import advise_random, advise_random_file
from index.models import Chunk, Document, Filters, Manifest, Passage, Sentence

__all__ = ["FORMAT_VERSION", "DocumentWrite", "LexicalQuery", "Snapshot", "Store", "build_lexical"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_GEN = re.compile(r"^gen-(\d{6,})$")
_SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, source TEXT, published TEXT, url TEXT,
    n_chunks INTEGER NOT NULL, added_at TEXT NOT NULL);
CREATE INDEX documents_source ON documents(source);
CREATE INDEX documents_published ON documents(published);
CREATE TABLE sentences (doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    PRIMARY KEY (doc_id, seq)) WITHOUT ROWID;
CREATE TABLE chunks (rowid INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL);
CREATE INDEX chunks_doc ON chunks(doc_id);
"""


@dataclass
class DocumentWrite:
    """One document to store, with everything derived from it at index time."""

    document: Document
    sentences: list[Sentence]
    chunks: list[Chunk]
    vectors: np.ndarray  # shape: (len(chunks), dimension), unit length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _generation_files(gen: Path) -> list[Path]:
    """The files a generation's manifest vouches for (everything but the manifest)."""
    return sorted(p for p in gen.rglob("*") if p.is_file() and p.name != "manifest.json")


def _checksums(gen: Path) -> dict[str, str]:
    return {p.relative_to(gen).as_posix(): sha256_file(p) for p in _generation_files(gen)}


def _row_to_document(row: sqlite3.Row) -> Document:
    return Document(id=row["id"], title=row["title"], text=row["text"], source=row["source"],
                    published=date.fromisoformat(row["published"]) if row["published"] else None,
                    url=row["url"], n_chunks=row["n_chunks"])


def build_lexical(db_path: Path, k1: float = 1.2, b: float = 0.75) -> LexicalIndex:
    """BM25 over the chunks (title + chunk text) and whole articles of a store, in row-id order."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT c.rowid, d.title || '. ' || substr(d.text, c.start + 1, c.end - c.start), "
                          "c.doc_id FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.rowid").fetchall()
        docs = db.execute("SELECT id, title || '. ' || text FROM documents ORDER BY id").fetchall()
    db.close()
    position = {doc_id: i for i, (doc_id, _) in enumerate(docs)}
    return LexicalIndex.build([r[1] for r in rows], np.array([r[0] for r in rows], dtype=np.int64),
                              doc_texts=[d[1] for d in docs],
                              doc_of_chunk=np.array([position[r[2]] for r in rows], dtype=np.int64), k1=k1, b=b)


def _article_centroids(index: faiss.Index, lexical: LexicalIndex, n_docs: int, dimension: int) -> np.ndarray:
    """The mean of each article's chunk vectors, re-normalised: the article as a whole, for dense context."""
    centroids = np.zeros((n_docs, dimension), dtype=np.float32)
    block = 65_536
    for first in range(0, len(lexical.rowids), block):
        rowids = np.ascontiguousarray(lexical.rowids[first:first + block], dtype=np.int64)
        np.add.at(centroids, lexical.doc_of_chunk[first:first + block], index.reconstruct_batch(rowids))
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids / np.where(norms > 0, norms, 1.0)


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
    index: faiss.Index
    lexical: LexicalIndex
    doc_vectors: np.ndarray  # shape: (n_documents, dimension); article centroids, rows as in lexical.doc_of_chunk
    _db: sqlite3.Connection = field(repr=False)
    candidates: faiss.Index | None = None  # large IVF generations: the first step of a two-step search
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        manifest = Manifest.model_validate_json((path / "manifest.json").read_text(encoding="utf-8"))
        index = ann.load_for_queries(path / "index.faiss")
        advise_random_file(path / "index.faiss")  # read by id to re-rank and score candidates, not in order
        lexical = LexicalIndex.load(path / "lexical")
        if (path / "doc_vectors.npy").is_file():
            doc_vectors = np.load(path / "doc_vectors.npy", mmap_mode="r")
            advise_random(doc_vectors)
        else:  # a generation written before centroids were stored: derive them
            doc_vectors = _article_centroids(index, lexical, manifest.n_documents, manifest.dimension)
        db = sqlite3.connect(f"file:{path / 'store.sqlite'}?mode=ro&immutable=1", uri=True,
                             check_same_thread=False)
        db.row_factory = sqlite3.Row
        candidates = ann.load_for_queries(path / "candidates.faiss") if (path / "candidates.faiss").is_file() \
            else None
        return cls(path=path, manifest=manifest, index=index, lexical=lexical, doc_vectors=doc_vectors, _db=db,
                   candidates=candidates)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- documents -----------------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document:
        """The stored document, with its cleaned text."""
        rows = self._query("SELECT * FROM documents WHERE id = ?", (doc_id,))
        if not rows:
            raise DocumentNotFound(f"no document with id {doc_id!r}")
        return _row_to_document(rows[0])

    def has_document(self, doc_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM documents WHERE id = ?", (doc_id,)))

    def documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        """Stored documents in id order, without their text (``text`` is empty)."""
        rows = self._query("SELECT id, title, '' AS text, source, published, url, n_chunks FROM documents "
                           "ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
        return [_row_to_document(r) for r in rows]

    def chunk_spans(self) -> dict[int, tuple[str, int, int]]:
        """Every chunk's (document id, start, end), by row id: one lookup table for bulk evaluation."""
        return {r[0]: (r[1], r[2], r[3]) for r in self._query("SELECT rowid, doc_id, start, end FROM chunks")}

    def sentences(self, doc_id: str) -> list[Sentence]:
        rows = self._query("SELECT start, end FROM sentences WHERE doc_id = ? ORDER BY seq", (doc_id,))
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
        rows = self._query("SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE "
                           + " AND ".join(where), params)
        return np.array([r[0] for r in rows], dtype=np.int64)

    def allowed_rowids(self, filters: Filters | None) -> np.ndarray | None:
        """Row ids of the chunks that pass ``filters``, or None when there is no restriction."""
        if filters is None or filters.is_empty():
            return None
        return self._allowed_rowids(filters)

    def dense_search(self, vector: np.ndarray, top_k: int, allowed: np.ndarray | None = None
                     ) -> list[tuple[int, float]]:
        """(rowid, cosine) of the ``top_k`` nearest chunks, optionally only among ``allowed`` row ids."""
        if self.index.ntotal == 0 or (allowed is not None and allowed.size == 0):
            return []
        scores, ids = ann.search(self.index, vector, top_k, allowed, candidates=self.candidates)
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]

    def lexical_query(self, query: str, doc_weight: float = 0.0, feedback_terms: int = 0,
                      feedback_weight: float = 0.3) -> LexicalQuery:
        """BM25 for ``query`` over this generation (every chunk scored at once, by bm25s)."""
        scores = self.lexical.scores(query, doc_weight=doc_weight, feedback_terms=feedback_terms,
                                     feedback_weight=feedback_weight)
        return LexicalQuery(self.lexical, query, scores)

    def article_dense(self, rowids: list[int], vector: np.ndarray) -> np.ndarray | None:
        """Cosine of each chunk's article centroid to ``vector`` (None for generations without centroids)."""
        if not len(self.doc_vectors):
            return None
        return np.asarray(self.doc_vectors[self.lexical.doc_positions(rowids)] @ vector, dtype=np.float32)

    def vectors(self, rowids: list[int]) -> np.ndarray:
        """The stored vectors of the given chunks. shape: (len(rowids), dimension)"""
        if not rowids:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return np.stack([self.index.reconstruct(r) for r in rowids])

    def passages(self, scored: list[tuple[int, float]]) -> list[tuple[int, Passage]]:
        """(rowid, passage) for (rowid, score) pairs, in the given order: chunk text with article metadata."""
        if not scored:
            return []
        rows = self._query(
            "SELECT c.rowid AS rid, c.chunk_id, c.doc_id, c.start, c.end, d.title, d.source, d.published, d.url,"
            " substr(d.text, c.start + 1, c.end - c.start) AS text FROM chunks c JOIN documents d ON d.id = c.doc_id"
            f" WHERE c.rowid IN ({','.join('?' * len(scored))})", [r for r, _ in scored])
        by_id = {r["rid"]: r for r in rows}
        return [(rid, Passage(doc_id=r["doc_id"], chunk_id=r["chunk_id"], title=r["title"], source=r["source"],
                              published=date.fromisoformat(r["published"]) if r["published"] else None,
                              url=r["url"], text=r["text"], start=r["start"], end=r["end"], score=score))
                for rid, score in scored if (r := by_id.get(rid)) is not None]


class Store:
    """Owns a data directory: opens the live generation, and applies writes atomically.

    Build one per process and share it; reads take ``snapshot()``, writes call ``write()``.
    """

    def __init__(self, data_dir: Path, model_id: str, dimension: int, bm25_k1: float = 1.2,
                 bm25_b: float = 0.75, ann_settings: ann.AnnSettings | None = None) -> None:
        self.data_dir = data_dir
        self.model_id = model_id
        self.dimension = dimension
        self.bm25_k1 = bm25_k1  # BM25 parameters apply from the next write, when the lexical index is rebuilt
        self.bm25_b = bm25_b
        self.ann = ann_settings or ann.AnnSettings()  # exact up to ann.exact_max chunks, IVF above
        self._snapshot: Snapshot | None = None
        self._current_name: str | None = None
        self._swap = threading.Lock()
        self._writer = threading.Lock()
        # Test hook: called with a step name at each stage of a write (crash tests kill the process there).
        self.checkpoint: Callable[[str], None] = lambda step: None

    # --- opening -------------------------------------------------------------------------------------
    def _read_current(self) -> str | None:
        try:
            name = (self.data_dir / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DataDirError(f"cannot read {self.data_dir / 'CURRENT'}: {exc.strerror}") from exc
        if not _GEN.match(name) or not (self.data_dir / name).is_dir():
            raise DataDirError(f"{self.data_dir / 'CURRENT'} names {name!r}, which is not a generation here; "
                               "the data directory is damaged")
        return name

    def _check_manifest(self, manifest: Manifest) -> None:
        if manifest.format_version != FORMAT_VERSION:
            raise DataDirError(f"{self.data_dir} uses data format {manifest.format_version}; this version of "
                               f"newsroom-qa reads format {FORMAT_VERSION}")
        if manifest.model_id != self.model_id or manifest.dimension != self.dimension:
            raise ModelMismatch(
                f"{self.data_dir} was built with embedding model {manifest.model_id!r} "
                f"({manifest.dimension} dimensions) but this service uses {self.model_id!r} "
                f"({self.dimension}); set NEWSROOM_QA_EMBEDDING_MODEL to {manifest.model_id!r}, or use another "
                "--data-dir and add the documents again"
            )

    def exists(self) -> bool:
        """True if the data directory already holds a generation."""
        return self._read_current() is not None

    def snapshot(self) -> Snapshot:
        """The live generation, reloaded if another process has written since it was opened."""
        name = self._read_current()
        with self._swap:
            if self._snapshot is not None and name == self._current_name:
                return self._snapshot
            if name is None:
                self._init_empty()
                name = self._read_current()
                assert name is not None
            snap = Snapshot.open(self.data_dir / name)
            self._check_manifest(snap.manifest)
            self._snapshot, self._current_name = snap, name
            return snap

    def _init_empty(self) -> None:
        with self._write_lock():
            if self._read_current() is None:
                self._publish(self._new_generation(base=None), n_documents=0)

    # --- writing -------------------------------------------------------------------------------------
    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._writer, (self.data_dir / ".write.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for p in self.data_dir.iterdir() if (m := _GEN.match(p.name.split(".")[0]))]
        return f"gen-{max(numbers, default=0) + 1:06d}"

    def _new_generation(self, base: str | None) -> tuple[Path, sqlite3.Connection, faiss.Index]:
        tmp = self.data_dir / f"{self._next_name()}.tmp-{os.getpid()}"
        tmp.mkdir()
        db = sqlite3.connect(tmp / "store.sqlite")
        if base is None:
            db.executescript(_SCHEMA)
            index: faiss.Index = ann.new_exact_index(self.dimension)
        else:
            with sqlite3.connect(f"file:{self.data_dir / base / 'store.sqlite'}?mode=ro", uri=True) as src:
                src.backup(db)
            index = faiss.read_index(str(self.data_dir / base / "index.faiss"))
        return tmp, db, index

    def _publish(self, gen: tuple[Path, sqlite3.Connection, faiss.Index], n_documents: int) -> None:
        tmp, db, index = gen
        index = ann.fit_index(index, self.ann)
        db.commit()
        n_chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        db.close()
        if n_chunks != index.ntotal:
            raise DataDirError(f"internal error: {n_chunks} chunks but {index.ntotal} vectors; nothing was saved")
        self.checkpoint("sqlite-written")
        self._build_lexical(tmp, index)
        self.checkpoint("lexical-written")
        faiss.write_index(index, str(tmp / "index.faiss"))
        candidates = ann.fit_candidates(index, self.ann)
        if candidates is not None:
            faiss.write_index(candidates, str(tmp / "candidates.faiss"))
        self.checkpoint("faiss-written")
        manifest = Manifest(format_version=FORMAT_VERSION, model_id=self.model_id, dimension=self.dimension,
                            n_documents=n_documents, n_chunks=n_chunks, generation=int(tmp.name[4:10]),
                            updated_at=datetime.now(UTC).isoformat(timespec="seconds"), checksums=_checksums(tmp))
        self.checkpoint("checksums-computed")
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        self.checkpoint("manifest-written")
        for file in [*_generation_files(tmp), tmp / "manifest.json"]:
            _fsync_file(file)
        self.checkpoint("files-synced")
        final = self.data_dir / tmp.name.split(".")[0]
        tmp.rename(final)
        _fsync_dir(self.data_dir)
        self.checkpoint("generation-renamed")
        pointer = self.data_dir / f"CURRENT.tmp-{os.getpid()}"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        _fsync_file(pointer)
        self.checkpoint("pointer-written")
        os.replace(pointer, self.data_dir / "CURRENT")
        _fsync_dir(self.data_dir)
        self.checkpoint("published")
        self._collect_garbage(keep={final.name})
        self.checkpoint("garbage-collected")

    def _build_lexical(self, tmp: Path, index: faiss.Index) -> None:
        """BM25 over the generation's chunks (title + text), and article centroid vectors, from the new store."""
        lexical = build_lexical(tmp / "store.sqlite", self.bm25_k1, self.bm25_b)
        lexical.save(tmp / "lexical")
        n_docs = int(lexical.doc_of_chunk.max(initial=-1)) + 1
        np.save(tmp / "doc_vectors.npy", _article_centroids(index, lexical, n_docs, self.dimension))

    def _collect_garbage(self, keep: set[str]) -> None:
        """Remove unreferenced generations and leftovers of interrupted writes, keeping one previous one."""
        gens = sorted(p.name for p in self.data_dir.iterdir() if _GEN.match(p.name))
        keep = keep | set(gens[-2:])
        for path in self.data_dir.iterdir():
            leftover = ".tmp-" in path.name
            old_gen = _GEN.match(path.name) is not None and path.name not in keep
            if leftover or old_gen:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def write(self, upserts: Sequence[DocumentWrite] = (), deletes: Sequence[str] = ()) -> Snapshot:
        """Replace or add ``upserts`` and remove ``deletes`` in one atomic step.

        :raises DocumentNotFound: if an id in ``deletes`` is not stored (nothing is changed).
        :returns: the new live snapshot.
        """
        with self._write_lock():
            base = self._read_current()
            if base is None:
                self._publish(self._new_generation(base=None), n_documents=0)
                base = self._read_current()
            assert base is not None
            with self._generation(base) as (tmp, db, index):
                now = datetime.now(UTC).isoformat(timespec="seconds")
                for doc_id in deletes:
                    if not self._remove(db, index, doc_id):
                        raise DocumentNotFound(f"no document with id {doc_id!r}")
                for n, item in enumerate(upserts, start=1):
                    self._insert(db, index, item, now)
                    self.checkpoint(f"document-{n}-inserted")
                n_documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
                self.checkpoint("changes-applied")
                self._publish((tmp, db, index), n_documents=n_documents)
        return self.snapshot()

    @contextmanager
    def _generation(self, base: str) -> Iterator[tuple[Path, sqlite3.Connection, faiss.Index]]:
        """A new generation copied from ``base``; removed again if the block fails before publishing it."""
        tmp, db, index = self._new_generation(base=base)
        try:
            yield tmp, db, index
        except BaseException:
            db.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def rebuild_indexes(self, embed: Callable[[list[str]], np.ndarray], batch: int = 512) -> Snapshot:
        """A new generation with the live SQLite store and freshly built vectors, BM25 and centroids (repair).

        :param embed: the chunk texts (``title. chunk text``, as ingestion embeds them) -> unit vectors.
        """
        with self._write_lock():
            base = self._read_current()
            if base is None:
                raise DataDirError(f"{self.data_dir} holds no generation to rebuild")
            with self._generation(base) as (tmp, db, _):
                index: faiss.Index = ann.new_exact_index(self.dimension)
                rows = db.execute("SELECT c.rowid, d.title || '. ' || substr(d.text, c.start + 1, c.end - c.start) "
                                  "FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.rowid").fetchall()
                for i in range(0, len(rows), batch):
                    part = rows[i:i + batch]
                    vectors = np.asarray(embed([text for _, text in part]), dtype=np.float32)
                    index.add_with_ids(vectors, np.array([rid for rid, _ in part], dtype=np.int64))
                n_documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
                self._publish((tmp, db, index), n_documents=n_documents)
        return self.snapshot()

    @staticmethod
    def _remove(db: sqlite3.Connection, index: faiss.Index, doc_id: str) -> bool:
        rowids = [r[0] for r in db.execute("SELECT rowid FROM chunks WHERE doc_id = ?", (doc_id,))]
        if rowids:
            index.remove_ids(np.array(rowids, dtype=np.int64))  # type: ignore[arg-type]
        db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        db.execute("DELETE FROM sentences WHERE doc_id = ?", (doc_id,))
        return db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0

    def _insert(self, db: sqlite3.Connection, index: faiss.Index, item: DocumentWrite, now: str) -> None:
        doc = item.document
        if item.vectors.shape != (len(item.chunks), self.dimension):
            raise ValueError(f"document {doc.id!r}: {len(item.chunks)} chunks but vectors of shape "
                             f"{item.vectors.shape}")
        self._remove(db, index, doc.id)
        db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (doc.id, doc.title, doc.text, doc.source,
                    doc.published.isoformat() if doc.published else None, doc.url, len(item.chunks), now))
        db.executemany("INSERT INTO sentences VALUES (?, ?, ?, ?)",
                       [(doc.id, i, s.start, s.end) for i, s in enumerate(item.sentences)])
        rowids = []
        for chunk in item.chunks:
            cur = db.execute("INSERT INTO chunks (chunk_id, doc_id, seq, start, end) VALUES (?, ?, ?, ?, ?)",
                             (chunk.chunk_id, chunk.doc_id, chunk.seq, chunk.start, chunk.end))
            rowids.append(cur.lastrowid)
        if rowids:
            index.add_with_ids(item.vectors, np.array(rowids, dtype=np.int64))
