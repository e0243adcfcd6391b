"""The postgres backend: documents, sentences, chunks, vectors and full text in one PostgreSQL database.

Any number of stateless service processes share one archive: a document written through one is searchable
through all the others at once. Vectors live in a pgvector column with an HNSW index (inner product: vectors are
unit length); the lexical side is postings of this project's own tokens (``index.tokens.tokenize``: folded,
stop-listed, Snowball-stemmed) per chunk and per article, ordered by impact, with document frequencies kept in
``lexemes`` by every write, so lexical scores match the FAISS backend's (bm25s, Lucene variant) and fusion in
``index.retrieval`` works the same on both. Rows go in by COPY (``index.postgres.rows``).

Writes are one transaction each (serialised by an advisory lock, which keeps the frequency counters exact);
reads go to a read pool when ``read_dsn`` names a replica. Transient errors (a dropped connection, a failover)
are retried with backoff (tenacity).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from index.errors import DataDirError, DocumentNotFound, InvalidInput
from index.models import DocumentWrite
from index.postgres.rows import deferred_indexes, insert, remove
from index.postgres.schema import migrate
from index.postgres.snapshot import PgSnapshot, first_line
from index.postgres.tuning import ef_search_for, hnsw_build_parameters

__all__ = ["PgSnapshot", "PgStore"]

logger = logging.getLogger(__name__)

_WRITE_LOCK = 7_265_012  # advisory lock key: "newsroom-qa writes"
_FRESH_S = 2.0  # a pooled connection returned this recently is not pinged before its next use
T = TypeVar("T")


class PgStore:
    """Owns the archive in PostgreSQL: migrates the schema at start-up, serves snapshots, applies writes.

    Build one per process and share it (it holds the connection pools).
    """

    backend = "postgres"

    def __init__(self, dsn: str, model_id: str, dimension: int, *, read_dsn: str | None = None,
                 pool_size: int = 8, bm25_k1: float = 1.2, bm25_b: float = 0.75, ef_search: int | None = None,
                 retries: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self.model_id = model_id
        self.dimension = dimension
        self.bm25_k1 = float(bm25_k1)
        self.bm25_b = float(bm25_b)
        self.ef_search = ef_search  # None: chosen from the archive's size (index.postgres.tuning)
        self.n_chunks = 0  # the archive's size as last seen (every search reads it)
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

        returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

        def configure(conn: Any) -> None:
            register_vector(conn)
            conn.autocommit = True  # a read is one statement, one round trip (no BEGIN, no ROLLBACK on return)
            # psycopg prepares a statement on its fifth run; PostgreSQL may then plan it once for any parameters,
            # and that generic plan of a search (its LIMITs and word lists unknown) is 4x slower. Plan each run.
            conn.execute("SET plan_cache_mode = force_custom_plan")

        def reset(conn: Any) -> None:
            returned[conn] = time.monotonic()

        def check(conn: Any) -> None:
            """Ping a connection that sat idle (the server may have restarted or failed over meanwhile); one
            returned moments ago is used as it is, sparing every read a round trip (a failure still retries)."""
            if time.monotonic() - returned.get(conn, 0.0) > _FRESH_S:
                pool_class.check_connection(conn)

        # timeout: how long a request waits for a connection before it fails (503) instead of hanging.
        pool = pool_class(dsn, min_size=1, max_size=size, open=False, configure=configure, reset=reset,
                          check=check, name="newsroom-qa", timeout=5.0)
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

    def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(cursor)`` on a read connection (autocommit: each statement its own snapshot, unless ``fn``
        opens a transaction), retried on transient errors."""
        def once() -> T:
            with self.read_pool.connection() as conn, conn.cursor() as cur:
                return fn(cur)
        return self._retrying(once)

    def hnsw_settings(self, top_k: int, filtered: bool) -> tuple[str, dict[str, str]]:
        """The statement that sets the HNSW search of this connection for ``top_k`` neighbours (sent in the same
        pipeline as the search): the candidate list for the archive's size and, with filters, pgvector's
        iterative scan, which keeps walking the graph until enough rows pass them."""
        ef = self.ef_search or ef_search_for(self.n_chunks, top_k)
        return ("SELECT set_config('hnsw.ef_search', %(ef)s, false), "
                "set_config('hnsw.iterative_scan', %(scan)s, false)",
                {"ef": str(max(ef, top_k)), "scan": "relaxed_order" if filtered else "off"})

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
            generation, n_chunks = self.read(lambda cur: cur.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'generation'), "
                "(SELECT n FROM totals WHERE collection = 'c')").fetchone())
            self._initialised, self.n_chunks = generation is not None, int(n_chunks or 0)
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
        # The same id twice in one write (two identical articles get the same derived id): the last one stands, as
        # in a data directory; COPY would otherwise break the primary key.
        upserts = list({item.document.id: item for item in upserts}.values())

        def apply(cur: Any) -> None:
            missing = sorted(set(deletes) - remove(cur, list(dict.fromkeys(deletes))))
            if missing:
                raise DocumentNotFound(f"no document with id {missing[0]!r}")
            remove(cur, [item.document.id for item in upserts])
            adding = sum(len(item.chunks) for item in upserts)
            with deferred_indexes(cur, adding, hnsw_build_parameters) as load:
                insert(cur, upserts, self.bm25_k1, self.bm25_b, load)
            loaded[0] = load.bulk
            self.n_chunks = int(cur.execute("SELECT n FROM totals WHERE collection = 'c'").fetchone()[0])

        loaded = [False]
        self._write(apply)
        if loaded[0]:
            # A bulk load leaves pages not marked all-visible (all of them, unless it was written frozen into an
            # empty archive: then those a COPY batch began part-full), and every index-only scan of the postings
            # would visit the table there (searches 5x slower) until autovacuum came by; VACUUM cannot run inside
            # the transaction, and skips the pages already all-visible.
            # Every table gets statistics: without them for the two-row ``totals`` (autovacuum analyzes a table
            # only after 50 changed rows) searches were planned 1.4x slower.
            self._retrying(lambda: self._vacuum("chunks", "chunk_terms", "doc_terms", "documents", "sentences",
                                                "lexemes", "totals", "meta"))
        return PgSnapshot(self)

    def _vacuum(self, *tables: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")

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
        """Re-embed every chunk (a model's vectors changed) and rebuild the chunks' indexes (HNSW among them)."""
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
