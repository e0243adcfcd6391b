"""The postgres backend: documents, sentences, chunks, vectors and full text in one PostgreSQL database.

Any number of stateless service processes share one archive: a document written through one is searchable
through all the others at once. Vectors live in a pgvector column with an HNSW index (inner product: vectors are
unit length); the lexical side is a ``tsvector`` column with a GIN index. The tsvector holds this project's own
tokens (``index.lexical.tokenize``: folded, stop-listed, Snowball-stemmed) with their counts, and BM25 is computed
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from index.errors import DataDirError, DocumentNotFound, InvalidInput
from index.lexical import VARIANT_MAX_DF, VARIANT_WEIGHT, closest_variants, may_have_variants, term_counts, tokenize
from index.models import Document, Filters, Manifest, Passage, Sentence
from index.pg_schema import migrate
from index.store import DocumentWrite

__all__ = ["PgSnapshot", "PgStore", "tsvector_literal"]

logger = logging.getLogger(__name__)

_WRITE_LOCK = 7_265_012  # advisory lock key: "newsroom-qa writes"
_MAX_LEXEME_BYTES = 2046  # PostgreSQL's limit for one lexeme is 2 KB
_MAX_POSITIONS = 255  # tsvector keeps at most 256 positions per lexeme; tf is capped there
T = TypeVar("T")


def tsvector_literal(counts: dict[str, int]) -> str:
    """A tsvector input string holding each token with ``count`` positions (1..count): the count is the term
    frequency BM25 needs; positions carry nothing else (no phrase search)."""
    parts = []
    for token, count in counts.items():
        if len(token.encode()) > _MAX_LEXEME_BYTES:
            continue
        quoted = token.replace("\\", "\\\\").replace("'", "''")
        parts.append(f"'{quoted}':" + ",".join(str(i) for i in range(1, min(count, _MAX_POSITIONS) + 1)))
    return " ".join(parts)


@dataclass(frozen=True)
class PgRestriction:
    """Metadata filters as a SQL condition over ``chunks c JOIN documents d`` (what ``allowed_rowids`` returns)."""

    sql: str
    params: tuple[object, ...]


def _restriction(filters: Filters | None) -> PgRestriction | None:
    if filters is None or filters.is_empty():
        return None
    where: list[str] = []
    params: list[object] = []
    if filters.sources:
        where.append("d.source = ANY(%s)")
        params.append(list(filters.sources))
    if filters.doc_ids:
        where.append("d.id = ANY(%s)")
        params.append(list(filters.doc_ids))
    if filters.published_from:
        where.append("d.published >= %s")
        params.append(filters.published_from)
    if filters.published_to:
        where.append("d.published <= %s")
        params.append(filters.published_to)
    return PgRestriction(" AND ".join(where), tuple(params))


class PgLexicalQuery:
    """BM25 of one query over chunks (and whole articles, mixed in by ``doc_weight``), computed in SQL from the
    postings (``chunk_terms``, ``doc_terms``): one index range per query word."""

    def __init__(self, snap: PgSnapshot, weights: dict[str, float], doc_weight: float) -> None:
        self.snap = snap
        self.weights = weights
        self.doc_weight = doc_weight
        self._tops: tuple[float, float] | None = None  # the best chunk and article scores, for scaling

    def _with(self, chunk_rows: str = "true", doc_rows: str = "true") -> str:
        """CTEs ``cs`` (chunk BM25: key, doc_id, s) and ``ds`` (article BM25: key, s) over the postings of the
        query words, for the postings that ``chunk_rows`` / ``doc_rows`` keep."""
        k1, b = self.snap.store.bm25_k1, self.snap.store.bm25_b

        def idf(collection: str) -> str:
            return f"""SELECT w.lexeme, w.weight * ln(1 + (t.n - l.df + 0.5) / (l.df + 0.5)) AS idfw,
                              t.terms::float8 / greatest(t.n, 1) AS avgdl
                       FROM unnest(%(terms)s::text[], %(weights)s::float8[]) AS w(lexeme, weight)
                       JOIN lexemes l ON l.collection = '{collection}' AND l.lexeme = w.lexeme
                       JOIN totals t ON t.collection = '{collection}'"""

        def bm25(alias: str) -> str:
            return f"sum(q.idfw * {alias}.tf / ({alias}.tf + {k1} * (1 - {b} + {b} * {alias}.dl / q.avgdl)))"

        return f"""WITH
            cs AS (SELECT p.rowid AS key, p.doc_id, {bm25('p')} AS s FROM ({idf('c')}) q
                   JOIN chunk_terms p ON p.lexeme = q.lexeme WHERE {chunk_rows} GROUP BY p.rowid, p.doc_id),
            ds AS (SELECT p.doc_id AS key, {bm25('p')} AS s FROM ({idf('d')}) q
                   JOIN doc_terms p ON p.lexeme = q.lexeme WHERE {doc_rows} GROUP BY p.doc_id)"""

    def _params(self) -> dict[str, object]:
        return {"terms": list(self.weights), "weights": list(self.weights.values())}

    def search(self, top_k: int, allowed: PgRestriction | None = None) -> list[tuple[int, float]]:
        """The ``top_k`` chunks with the highest score (> 0), optionally only among ``allowed``.

        With ``doc_weight`` a chunk scores ``(1 - w) * chunk / best chunk + w * article / best article``. The
        candidates are every chunk matching a query word plus every chunk of the ``top_k`` best articles: a chunk
        outside both scores at most ``w * article / best``, which ``top_k`` chunks of better articles beat, so
        the top ``top_k`` is exact.
        """
        if not self.weights:
            return []
        cond = _condition(allowed)
        params = _merge({**self._params(), "k": top_k}, allowed)
        if self.doc_weight <= 0:
            join = "" if allowed is None else f"JOIN documents d ON d.id = cs.doc_id WHERE {cond}"
            sql = f"""{self._with()}
                SELECT cs.key, cs.s, (SELECT max(s) FROM cs), 0.0 FROM cs {join}
                ORDER BY cs.s DESC, cs.key LIMIT %(k)s"""
        else:
            w = self.doc_weight
            doc_filter = "" if allowed is None else f"JOIN documents d ON d.id = ds.key WHERE {cond}"
            chunk_filter = "" if allowed is None else f"JOIN documents d ON d.id = cs.doc_id WHERE {cond}"
            sql = f"""{self._with()},
                top AS (SELECT (SELECT max(s) FROM cs) AS c, (SELECT max(s) FROM ds) AS d),
                best_docs AS (SELECT ds.key FROM ds {doc_filter} ORDER BY ds.s DESC, ds.key LIMIT %(k)s),
                candidates AS (
                    SELECT cs.key AS rowid, cs.doc_id, cs.s FROM cs {chunk_filter}
                    UNION ALL
                    SELECT c.rowid, c.doc_id, 0.0 FROM best_docs b JOIN chunks c ON c.doc_id = b.key
                    WHERE NOT EXISTS (SELECT 1 FROM cs WHERE cs.key = c.rowid))
                SELECT x.rowid, CASE WHEN top.c > 0 AND top.d > 0
                                     THEN {1 - w} * x.s / top.c + {w} * coalesce(ds.s, 0) / top.d
                                     ELSE x.s END AS mixed, top.c, top.d
                FROM candidates x LEFT JOIN ds ON ds.key = x.doc_id CROSS JOIN top
                ORDER BY mixed DESC, x.rowid LIMIT %(k)s"""
        rows = self.snap.store.read(lambda cur: cur.execute(sql, params).fetchall())
        if rows:
            self._tops = (float(rows[0][2] or 0.0), float(rows[0][3] or 0.0))
        return [(int(r[0]), float(r[1])) for r in rows if r[1] and r[1] > 0]

    def _top_scores(self) -> tuple[float, float]:
        if self._tops is None:
            sql = f"{self._with()} SELECT (SELECT max(s) FROM cs), (SELECT max(s) FROM ds)"
            top_c, top_d = self.snap.store.read(lambda cur: cur.execute(sql, self._params()).fetchone())
            self._tops = (float(top_c or 0.0), float(top_d or 0.0))
        return self._tops

    def scores(self, rowids: list[int]) -> np.ndarray:
        """The score of each of ``rowids`` (0 for chunks the query does not match)."""
        if not rowids or not self.weights:
            return np.zeros(len(rowids), dtype=np.float32)
        top_c, top_d = self._top_scores()
        sql = f"""{self._with("p.rowid = ANY(%(rowids)s)",
                              "p.doc_id IN (SELECT doc_id FROM chunks WHERE rowid = ANY(%(rowids)s))")}
            SELECT c.rowid, coalesce(cs.s, 0), coalesce(ds.s, 0) FROM chunks c
            LEFT JOIN cs ON cs.key = c.rowid LEFT JOIN ds ON ds.key = c.doc_id WHERE c.rowid = ANY(%(rowids)s)"""
        rows = self.snap.store.read(lambda cur: cur.execute(sql, {**self._params(), "rowids": rowids}).fetchall())
        w = self.doc_weight
        found = {}
        for rowid, chunk_s, doc_s in rows:
            mixed = (1 - w) * chunk_s / top_c + w * doc_s / top_d if w > 0 and top_c > 0 and top_d > 0 else chunk_s
            found[int(rowid)] = float(mixed)
        return np.array([found.get(r, 0.0) for r in rowids], dtype=np.float32)


def _condition(allowed: PgRestriction | None) -> str:
    """The filter's SQL with its ``%s`` placeholders named ``%(f0)s``, ``%(f1)s``... (queries use named ones)."""
    if allowed is None:
        return "true"
    pieces = allowed.sql.split("%s")
    return "".join(piece + (f"%(f{i})s" if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces))


def _merge(params: dict[str, object], allowed: PgRestriction | None) -> dict[str, object]:
    if allowed is None:
        return params
    return {**params, **{f"f{i}": v for i, v in enumerate(allowed.params)}}


class PgSnapshot:
    """The archive as the database holds it now; the same methods as a data directory's ``Snapshot``."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        # Articles (and their sentences) read together with passages, at the same instant: a request slices its
        # quotes from the version its passages came from, even if a writer replaces or deletes it meanwhile.
        self._docs: dict[str, Document] = {}
        self._sentences: dict[str, list[Sentence]] = {}

    @property
    def manifest(self) -> Manifest:
        def load(cur: Any) -> tuple[dict[str, int], str]:
            totals = dict(cur.execute("SELECT collection, n FROM totals").fetchall())
            generation = cur.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return totals, (generation[0] if generation else "0")
        totals, generation = self.store.read(load)
        return Manifest(format_version=0, model_id=self.store.model_id, dimension=self.store.dimension,
                        n_documents=int(totals.get("d", 0)), n_chunks=int(totals.get("c", 0)),
                        generation=int(generation), updated_at="")

    # --- documents -----------------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document:
        if doc_id in self._docs:
            return self._docs[doc_id]
        row = self.store.read(lambda cur: cur.execute(
            "SELECT id, title, text, source, published, url, n_chunks FROM documents WHERE id = %s",
            (doc_id,)).fetchone())
        if row is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}")
        return _document(row)

    def has_document(self, doc_id: str) -> bool:
        if doc_id in self._docs:
            return True
        return bool(self.store.read(lambda cur: cur.execute("SELECT 1 FROM documents WHERE id = %s",
                                                            (doc_id,)).fetchone()))

    def documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = self.store.read(lambda cur: cur.execute(
            "SELECT id, title, '', source, published, url, n_chunks FROM documents ORDER BY id LIMIT %s OFFSET %s",
            (limit, offset)).fetchall())
        return [_document(r) for r in rows]

    def chunk_spans(self) -> dict[int, tuple[str, int, int]]:
        rows = self.store.read(lambda cur: cur.execute("SELECT rowid, doc_id, start_at, end_at FROM chunks")
                               .fetchall())
        return {int(r[0]): (r[1], r[2], r[3]) for r in rows}

    def sentences(self, doc_id: str) -> list[Sentence]:
        if doc_id in self._sentences:
            return self._sentences[doc_id]
        rows = self.store.read(lambda cur: cur.execute(
            "SELECT start_at, end_at FROM sentences WHERE doc_id = %s ORDER BY seq", (doc_id,)).fetchall())
        return [Sentence(start=s, end=e) for s, e in rows]

    # --- search --------------------------------------------------------------------------------------
    def allowed_rowids(self, filters: Filters | None) -> PgRestriction | None:
        """The filters as a SQL condition (searches apply it in the database), or None."""
        return _restriction(filters)

    def dense_search(self, vector: np.ndarray, top_k: int, allowed: PgRestriction | None = None
                     ) -> list[tuple[int, float]]:
        """(rowid, cosine) of the ``top_k`` nearest chunks by the HNSW index, optionally only among ``allowed``."""
        ef = max(self.store.ef_search, top_k)

        def run(cur: Any) -> list[tuple[int, float]]:
            cur.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            if allowed is not None:  # keep scanning the graph until enough rows pass the filter (pgvector 0.8)
                cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            join = "" if allowed is None else f"JOIN documents d ON d.id = c.doc_id WHERE {_condition(allowed)}"
            rows = cur.execute(
                f"SELECT c.rowid, -(c.embedding <#> %(q)s) FROM chunks c {join} "
                "ORDER BY c.embedding <#> %(q)s LIMIT %(k)s",
                _merge({"q": np.asarray(vector, dtype=np.float32), "k": top_k}, allowed)).fetchall()
            return [(int(r), float(s)) for r, s in rows]
        hits = self.store.read(run, transaction=True)
        return sorted(hits, key=lambda h: -h[1])

    def lexical_query(self, query: str, doc_weight: float = 0.0, feedback_terms: int = 0,
                      feedback_weight: float = 0.3) -> PgLexicalQuery:
        """BM25 for ``query``: its words, and rare corpus words spelled like them at a reduced weight.

        Pseudo-relevance feedback (``feedback_terms``) is a FAISS-backend feature; the settings refuse it here.
        """
        tokens = list(dict.fromkeys(tokenize(query)))
        if not tokens:
            return PgLexicalQuery(self, {}, doc_weight)

        def load(cur: Any) -> tuple[dict[str, int], int, str]:
            df = dict(cur.execute("SELECT lexeme, df FROM lexemes WHERE collection = 'c' AND df > 0 "
                                  "AND lexeme = ANY(%s)", (tokens,)).fetchall())
            n = cur.execute("SELECT n FROM totals WHERE collection = 'c'").fetchone()[0]
            generation = cur.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return df, int(n), generation[0] if generation else "0"
        df, n_chunks, generation = self.store.read(load)
        weights = {t: 1.0 for t in tokens if t in df}
        max_df = max(2, int(VARIANT_MAX_DF * n_chunks))
        for token in tokens:
            if may_have_variants(token, df.get(token, 0), max_df):
                for variant in closest_variants(token, self.store.rare_words(token[0], max_df, generation)):
                    weights.setdefault(variant, VARIANT_WEIGHT)
        return PgLexicalQuery(self, weights, doc_weight)

    def vectors(self, rowids: list[int]) -> np.ndarray:
        """The stored vectors of the given chunks. shape: (len(rowids), dimension)"""
        if not rowids:
            return np.zeros((0, self.store.dimension), dtype=np.float32)
        rows = self.store.read(lambda cur: cur.execute("SELECT rowid, embedding FROM chunks WHERE rowid = ANY(%s)",
                                                       (rowids,)).fetchall())
        by_id = {int(r): _as_array(v) for r, v in rows}
        missing = np.zeros(self.store.dimension, dtype=np.float32)  # deleted since it was found: scores 0
        return np.stack([by_id.get(r, missing) for r in rowids])

    def article_dense(self, rowids: list[int], vector: np.ndarray) -> np.ndarray:
        """Cosine of each chunk's article centroid to ``vector``."""
        rows = self.store.read(lambda cur: cur.execute(
            "SELECT c.rowid, -(d.centroid <#> %s) FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.rowid = ANY(%s)", (np.asarray(vector, dtype=np.float32), rowids)).fetchall())
        found = {int(r): float(s or 0.0) for r, s in rows}
        return np.array([found.get(r, 0.0) for r in rowids], dtype=np.float32)

    def passages(self, scored: list[tuple[int, float]]) -> list[tuple[int, Passage]]:
        """(rowid, passage) for (rowid, score) pairs, in the given order: chunk text with article metadata."""
        if not scored:
            return []

        def run(cur: Any) -> list[Any]:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one instant for all three
            rows = cur.execute(
                "SELECT c.rowid, c.chunk_id, c.doc_id, c.start_at, c.end_at, d.title, d.source, d.published, d.url, "
                "substr(d.text, c.start_at + 1, c.end_at - c.start_at) FROM chunks c "
                "JOIN documents d ON d.id = c.doc_id WHERE c.rowid = ANY(%s)", ([r for r, _ in scored],)).fetchall()
            wanted = sorted({r[2] for r in rows} - self._docs.keys())
            docs = cur.execute("SELECT id, title, text, source, published, url, n_chunks FROM documents "
                               "WHERE id = ANY(%s)", (wanted,)).fetchall()
            sentences = cur.execute("SELECT doc_id, start_at, end_at FROM sentences WHERE doc_id = ANY(%s) "
                                    "ORDER BY doc_id, seq", (wanted,)).fetchall()
            for doc in docs:
                self._docs[doc[0]] = _document(doc)
                self._sentences[doc[0]] = []
            for doc_id, start, end in sentences:
                self._sentences[doc_id].append(Sentence(start=start, end=end))
            return list(rows)
        rows = self.store.read(run, transaction=True)
        by_id = {int(r[0]): r for r in rows}
        return [(rid, Passage(doc_id=r[2], chunk_id=r[1], title=r[5], source=r[6], published=r[7], url=r[8],
                              text=r[9], start=r[3], end=r[4], score=score))
                for rid, score in scored if (r := by_id.get(rid)) is not None]


def _as_array(value: Any) -> np.ndarray:
    """A pgvector value as float32 (pgvector's loaders give a ``Vector`` or an array, by version and format)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _document(row: Sequence[Any]) -> Document:
    return Document(id=row[0], title=row[1], text=row[2], source=row[3], published=row[4], url=row[5],
                    n_chunks=row[6])


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
            raise DataDirError(f"PostgreSQL is unavailable: {_first_line(exc)}") from exc
        except psycopg.DataError as exc:  # e.g. a NUL character, which PostgreSQL text cannot hold
            raise InvalidInput(f"PostgreSQL cannot store or compare a value given: {_first_line(exc)}") from exc
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
        self.df[collection].update(t for t in terms if len(t.encode()) <= _MAX_LEXEME_BYTES)
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

