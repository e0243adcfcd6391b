"""A read of the postgres archive for one request: documents, sentences and what retrieval asks (dense search
through pgvector's HNSW index, BM25 in SQL from the document frequencies every write keeps exact), with filters as
SQL conditions. Reads go through ``PgStore.read`` (pooled, retried)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from index.errors import DocumentNotFound
from index.models import Document, Filters, Manifest, Passage, Sentence
from index.tokens import VARIANT_MAX_DF, VARIANT_WEIGHT, closest_variants, may_have_variants, tokenize

if TYPE_CHECKING:
    from index.postgres.store import PgStore

__all__ = ["MAX_LEXEME_BYTES", "MAX_POSITIONS", "PgLexicalQuery", "PgRestriction", "PgSnapshot", "first_line",
           "row_document", "tsvector_literal"]

MAX_LEXEME_BYTES = 2046  # PostgreSQL's limit for one lexeme is 2 KB
MAX_POSITIONS = 255  # tsvector keeps at most 256 positions per lexeme; tf is capped there

def tsvector_literal(counts: dict[str, int]) -> str:
    """A tsvector input string holding each token with ``count`` positions (1..count): the count is the term
    frequency BM25 needs; positions carry nothing else (no phrase search)."""
    parts = []
    for token, count in counts.items():
        if len(token.encode()) > MAX_LEXEME_BYTES:
            continue
        quoted = token.replace("\\", "\\\\").replace("'", "''")
        parts.append(f"'{quoted}':" + ",".join(str(i) for i in range(1, min(count, MAX_POSITIONS) + 1)))
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
        return row_document(row)

    def has_document(self, doc_id: str) -> bool:
        if doc_id in self._docs:
            return True
        return bool(self.store.read(lambda cur: cur.execute("SELECT 1 FROM documents WHERE id = %s",
                                                            (doc_id,)).fetchone()))

    def documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = self.store.read(lambda cur: cur.execute(
            "SELECT id, title, '', source, published, url, n_chunks FROM documents ORDER BY id LIMIT %s OFFSET %s",
            (limit, offset)).fetchall())
        return [row_document(r) for r in rows]

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
                self._docs[doc[0]] = row_document(doc)
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


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def row_document(row: Sequence[Any]) -> Document:
    return Document(id=row[0], title=row[1], text=row[2], source=row[3], published=row[4], url=row[5],
                    n_chunks=row[6])
