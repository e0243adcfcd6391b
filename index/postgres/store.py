"""The postgres backend: documents, sentences, chunks, vectors and full text in one PostgreSQL database.

Any number of stateless service processes share one archive: a document written through one is searchable
through all the others at once. Vectors live in a pgvector column with an HNSW index (inner product: vectors are
unit length); the lexical side is a ``tsvector`` column with a GIN index. The tsvector holds this project's own
tokens (``index.tokens.tokenize``: folded, stop-listed, Snowball-stemmed) with their counts, and BM25 is computed
in SQL from document frequencies kept in ``lexemes`` by every write, so lexical scores match the FAISS backend's
(bm25s, Lucene variant) and fusion in ``index.retrieval`` works the same on both.

Writes are one transaction each (serialised by an advisory lock, which keeps the frequency counters exact);
reads go to a read pool when ``read_dsn`` names a replica. Transient errors (a dropped connection, a failover)
are retried with backoff (tenacity).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from index.errors import DataDirError, DocumentNotFound, InvalidInput
from index.models import DocumentWrite
from index.postgres.schema import migrate
from index.postgres.snapshot import MAX_LEXEME_BYTES, PgSnapshot, first_line, tsvector_literal
from index.tokens import term_counts

__all__ = ["PgSnapshot", "PgStore", "tsvector_literal"]

logger = logging.getLogger(__name__)

_WRITE_LOCK = 7_265_012  # advisory lock key: "newsroom-qa writes"
T = TypeVar("T")


class PgStore:
    """Owns the archive in PostgreSQL: migrates the schema at start-up, serves snapshots, applies writes.

    Build one per process and share it (it holds the connection pools).
    """

    backend = "postgres"

    def __init__(self, dsn: str, model_id: str, dimension: int, *, read_dsn: str | None = None,
                 pool_size: int = 8, bm25_k1: float = 1.2, bm25_b: float = 0.75, ef_search: int = 100,
                 retries: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self.model_id = model_id
        self.dimension = dimension
        self.bm25_k1 = float(bm25_k1)
        self.bm25_b = float(bm25_b)
        self.ef_search = ef_search
        self.retries = retries
        self._vocab: dict[tuple[str, int], list[str]] = {}
        self._vocab_generation = ""
        self._vocab_lock = threading.Lock()
        self._initialised = False
        migrate(dsn, model_id, dimension)
        self.pool = self._open_pool(ConnectionPool, dsn, pool_size)
        self.read_pool = self._open_pool(ConnectionPool, read_dsn, pool_size) if read_dsn else self.pool

    def _open_pool(self, pool_class: Any, dsn: str, size: int) -> Any:
        from pgvector.psycopg import register_vector

        # timeout: how long a request waits for a connection before it fails (503) instead of hanging.
        pool = pool_class(dsn, min_size=1, max_size=size, open=False, configure=register_vector,
                          check=pool_class.check_connection, name="newsroom-qa", timeout=5.0)
        try:
            pool.open(wait=True, timeout=30)
        except Exception as exc:  # psycopg_pool.PoolTimeout and connection errors
            pool.close()
            raise DataDirError(f"cannot connect to PostgreSQL: {exc}") from exc
        return pool

    def close(self) -> None:
        self.pool.close()
        if self.read_pool is not self.pool:
            self.read_pool.close()

    # --- plumbing ------------------------------------------------------------------------------------
    def _retrying(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried with backoff on transient errors; a database still unreachable after that is a
        ``DataDirError`` (HTTP 503), not a traceback."""
        import psycopg
        from psycopg_pool import PoolTimeout
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        try:
            for attempt in Retrying(retry=retry_if_exception_type((psycopg.OperationalError,
                                                                   psycopg.errors.SerializationFailure)),
                                    stop=stop_after_attempt(self.retries), wait=wait_exponential(0.05, max=2),
                                    reraise=True):
                with attempt:
                    return fn()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DataDirError(f"PostgreSQL is unavailable: {first_line(exc)}") from exc
        except psycopg.DataError as exc:  # e.g. a NUL character, which PostgreSQL text cannot hold
            raise InvalidInput(f"PostgreSQL cannot store or compare a value given: {first_line(exc)}") from exc
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[Any], T], transaction: bool = False) -> T:
        """Run ``fn(cursor)`` on a read connection, retried on transient errors."""
        def once() -> T:
            with self.read_pool.connection() as conn:
                if transaction:
                    with conn.transaction(), conn.cursor() as cur:
                        return fn(cur)
                with conn.cursor() as cur:
                    return fn(cur)
        return self._retrying(once)

    def rare_words(self, initial: str, max_df: int, generation: str) -> list[str]:
        """Alphabetic corpus words of 5+ letters starting with ``initial`` and in at most ``max_df`` chunks: the
        candidates for spelling variants. Kept per write generation, so a query does not fetch them again."""
        key = (initial, max_df)
        with self._vocab_lock:
            if self._vocab_generation != generation:
                self._vocab.clear()
                self._vocab_generation = generation
            cached = self._vocab.get(key)
        if cached is not None:
            return cached
        words = [w for (w,) in self.read(lambda cur: cur.execute(
            "SELECT lexeme FROM lexemes WHERE collection = 'c' AND lexeme >= %s AND lexeme < %s AND df > 0 "
            "AND df <= %s AND length(lexeme) >= 5", (initial, chr(ord(initial) + 1), max_df)).fetchall())
            if w.isalpha()]
        with self._vocab_lock:
            if self._vocab_generation == generation:
                self._vocab[key] = words
        return words

    # --- the Store interface -------------------------------------------------------------------------
    def exists(self) -> bool:
        """True once the archive has been initialised (seeded or written to) by any process; once true it stays
        true, so requests stop asking."""
        if not self._initialised:
            self._initialised = self.read(lambda cur: cur.execute(
                "SELECT 1 FROM meta WHERE key = 'generation'").fetchone() is not None)
        return self._initialised

    def snapshot(self) -> PgSnapshot:
        if not self.exists():
            self._write(lambda cur: None)
        return PgSnapshot(self)

    def write(self, upserts: Sequence[DocumentWrite] = (), deletes: Sequence[str] = ()) -> PgSnapshot:
        """Replace or add ``upserts`` and remove ``deletes`` in one transaction.

        :raises DocumentNotFound: if an id in ``deletes`` is not stored (nothing is changed).
        """
        for item in upserts:
            if item.vectors.shape != (len(item.chunks), self.dimension):
                raise ValueError(f"document {item.document.id!r}: {len(item.chunks)} chunks but vectors of shape "
                                 f"{item.vectors.shape}")

        def apply(cur: Any) -> None:
            counts = _Counts()
            for doc_id in deletes:
                if not self._remove(cur, doc_id, counts):
                    raise DocumentNotFound(f"no document with id {doc_id!r}")
            for item in upserts:
                self._remove(cur, item.document.id, counts)
                self._insert(cur, item, counts)
            counts.apply(cur)
        self._write(apply)
        return PgSnapshot(self)

    def _write(self, apply: Callable[[Any], None]) -> None:
        def once() -> None:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                apply(cur)
                cur.execute("INSERT INTO meta VALUES ('generation', '1'), ('updated_at', %s) ON CONFLICT (key) DO "
                            "UPDATE SET value = CASE WHEN meta.key = 'generation' "
                            "THEN (meta.value::bigint + 1)::text ELSE excluded.value END",
                            (datetime.now(UTC).isoformat(timespec="seconds"),))
        self._retrying(once)

    def rebuild_indexes(self, embed: Callable[[list[str]], np.ndarray], batch: int = 512) -> PgSnapshot:
        """Re-embed every chunk (a model's vectors changed) and rebuild the HNSW and GIN indexes."""
        def apply(cur: Any) -> None:
            rows = cur.execute("SELECT c.rowid, d.title || '. ' || substr(d.text, c.start_at + 1, "
                               "c.end_at - c.start_at) FROM chunks c JOIN documents d ON d.id = c.doc_id "
                               "ORDER BY c.rowid").fetchall()
            for i in range(0, len(rows), batch):
                part = rows[i:i + batch]
                vectors = np.asarray(embed([text for _, text in part]), dtype=np.float32)
                cur.executemany("UPDATE chunks SET embedding = %s WHERE rowid = %s",
                                [(v, rid) for (rid, _), v in zip(part, vectors, strict=True)])
            cur.execute("REINDEX TABLE chunks")
        self._write(apply)
        return PgSnapshot(self)

    @staticmethod
    def _remove(cur: Any, doc_id: str, counts: _Counts) -> bool:
        """Delete a document (its chunks and sentences cascade), taking its words out of the frequencies."""
        for collection, table, key in (("c", "chunks", "doc_id"), ("d", "documents", "id")):
            rows = cur.execute(f"SELECT u.lexeme, count(*) FROM {table} x, unnest(x.tsv) u WHERE x.{key} = %s "
                               "GROUP BY u.lexeme", (doc_id,)).fetchall()
            counts.df[collection].subtract(dict(rows))
            n, terms = cur.execute(f"SELECT count(*), coalesce(sum(n_terms), 0) FROM {table} WHERE {key} = %s",
                                   (doc_id,)).fetchone()
            counts.n[collection] -= int(n)
            counts.terms[collection] -= int(terms)
        return bool(cur.execute("DELETE FROM documents WHERE id = %s", (doc_id,)).rowcount)

    @staticmethod
    def _insert(cur: Any, item: DocumentWrite, counts: _Counts) -> None:
        doc = item.document
        doc_terms = term_counts(f"{doc.title}. {doc.text}")
        centroid = item.vectors.mean(axis=0) if len(item.chunks) else None
        if centroid is not None:
            norm = float(np.linalg.norm(centroid))
            centroid = centroid / norm if norm > 0 else centroid
        cur.execute("INSERT INTO documents (id, title, text, source, published, url, n_chunks, tsv, n_terms, "
                    "centroid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s, %s)",
                    (doc.id, doc.title, doc.text, doc.source, doc.published, doc.url, len(item.chunks),
                     tsvector_literal(doc_terms), sum(doc_terms.values()), centroid))
        counts.add("d", doc_terms)
        if item.sentences:
            cur.executemany("INSERT INTO sentences VALUES (%s, %s, %s, %s)",
                            [(doc.id, i, s.start, s.end) for i, s in enumerate(item.sentences)])
        rows = []
        for chunk, vector in zip(item.chunks, item.vectors, strict=True):
            terms = term_counts(f"{doc.title}. {doc.text[chunk.start:chunk.end]}")
            counts.add("c", terms)
            rows.append((chunk.chunk_id, chunk.doc_id, chunk.seq, chunk.start, chunk.end,
                         np.asarray(vector, dtype=np.float32), tsvector_literal(terms), sum(terms.values())))
        if rows:
            cur.executemany("INSERT INTO chunks (chunk_id, doc_id, seq, start_at, end_at, embedding, tsv, n_terms) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s::tsvector, %s)", rows)
        # Postings, derived from the tsvectors just stored (what BM25 reads; see pg_migrations v0002).
        cur.execute("INSERT INTO chunk_terms SELECT u.lexeme, c.rowid, c.doc_id, coalesce(array_length(u.positions, "
                    "1), 1), c.n_terms FROM chunks c, unnest(c.tsv) u WHERE c.doc_id = %s", (doc.id,))
        cur.execute("INSERT INTO doc_terms SELECT u.lexeme, d.id, coalesce(array_length(u.positions, 1), 1), "
                    "d.n_terms FROM documents d, unnest(d.tsv) u WHERE d.id = %s", (doc.id,))


class _Counts:
    """Changes to document frequencies and collection sizes within one write, applied at its end."""

    def __init__(self) -> None:
        self.df: dict[str, Counter[str]] = {"c": Counter(), "d": Counter()}
        self.n = {"c": 0, "d": 0}
        self.terms = {"c": 0, "d": 0}

    def add(self, collection: str, terms: dict[str, int]) -> None:
        self.df[collection].update(t for t in terms if len(t.encode()) <= MAX_LEXEME_BYTES)
        self.n[collection] += 1
        self.terms[collection] += sum(terms.values())

    def apply(self, cur: Any) -> None:
        for collection, changes in self.df.items():
            items = sorted((t, d) for t, d in changes.items() if d != 0)
            if items:
                cur.execute("INSERT INTO lexemes (collection, lexeme, df) SELECT %s, t, d FROM unnest(%s::text[], "
                            "%s::int[]) AS u(t, d) ON CONFLICT (collection, lexeme) DO UPDATE "
                            "SET df = lexemes.df + excluded.df",
                            (collection, [t for t, _ in items], [d for _, d in items]))
            cur.execute("UPDATE totals SET n = n + %s, terms = terms + %s WHERE collection = %s",
                        (self.n[collection], self.terms[collection], collection))
        cur.execute("DELETE FROM lexemes WHERE df <= 0")

