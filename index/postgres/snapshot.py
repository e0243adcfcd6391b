"""A read of the postgres archive for one request: documents, sentences and what retrieval asks (dense search
through pgvector's HNSW index, BM25 in SQL from the document frequencies every write keeps exact), with filters as
SQL conditions. Reads go through ``PgStore.read`` (pooled, retried)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from index.errors import DocumentNotFound
from index.models import Document, Filters, Manifest, Passage, Sentence
from index.postgres.candidates import gather
from index.postgres.filters import PgRestriction, condition, merge_params, restriction
from index.postgres.lexical import PgLexicalQuery
from index.postgres.roundtrip import pipelined
from index.retrieval import Candidates, RetrievalOptions
from index.tokens import VARIANT_MAX_DF, VARIANT_WEIGHT, closest_variants, may_have_variants, tokenize

if TYPE_CHECKING:
    from index.postgres.store import PgStore

__all__ = ["PgSnapshot", "first_line", "row_document"]

_PREFETCH_MIN = 12  # passages whose articles are read with them, at least


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
        return restriction(filters)

    def dense_search(self, vector: np.ndarray, top_k: int, allowed: PgRestriction | None = None
                     ) -> list[tuple[int, float]]:
        """(rowid, cosine) of the ``top_k`` nearest chunks by the HNSW index, optionally only among ``allowed``."""
        settings = self.store.hnsw_settings(top_k, allowed is not None)
        join = "" if allowed is None else f"JOIN documents d ON d.id = c.doc_id WHERE {condition(allowed)}"
        sql = (f"SELECT c.rowid, -(c.embedding <#> %(q)s) FROM chunks c {join} ORDER BY c.embedding <#> %(q)s "
               "LIMIT %(k)s")
        params = merge_params({"q": np.asarray(vector, dtype=np.float32), "k": top_k}, allowed)
        rows = self.store.read(lambda cur: pipelined(cur, [settings, (sql, params)])[-1])
        return sorted(((int(r), float(s)) for r, s in rows), key=lambda h: -h[1])

    def lexical_query(self, query: str, doc_weight: float = 0.0, feedback_terms: int = 0,
                      feedback_weight: float = 0.3) -> PgLexicalQuery:
        """BM25 for ``query``: its words, and rare corpus words spelled like them at a reduced weight.

        One statement reads the words' document frequencies, the archive's size and its write generation (the
        key of the spelling-variant cache). Pseudo-relevance feedback (``feedback_terms``) is a FAISS-backend
        feature; the settings refuse it here.
        """
        tokens = list(dict.fromkeys(tokenize(query)))
        if not tokens:
            return PgLexicalQuery(self, {}, doc_weight)
        rows = self.store.read(lambda cur: cur.execute(
            "SELECT l.lexeme, l.df, t.n, m.value FROM totals t LEFT JOIN meta m ON m.key = 'generation' "
            "LEFT JOIN lexemes l ON l.collection = 'c' AND l.df > 0 AND l.lexeme = ANY(%s) "
            "WHERE t.collection = 'c'", (tokens,)).fetchall())
        df = {lexeme: int(d) for lexeme, d, _, _ in rows if lexeme is not None}
        n_chunks, generation = (int(rows[0][2]), str(rows[0][3] or "0")) if rows else (0, "0")
        self.store.n_chunks = n_chunks
        weights = {t: 1.0 for t in tokens if t in df}
        max_df = max(2, int(VARIANT_MAX_DF * n_chunks))
        for token in tokens:
            if may_have_variants(token, df.get(token, 0), max_df):
                for variant in closest_variants(token, self.store.rare_words(token[0], max_df, generation)):
                    weights.setdefault(variant, VARIANT_WEIGHT)
        return PgLexicalQuery(self, weights, doc_weight)

    def candidates(self, query: str, vector: np.ndarray, allowed: PgRestriction | None,
                   options: RetrievalOptions) -> Candidates:
        """Both signals' candidates with all their scores: the words' statistics, then one statement."""
        return gather(self, self.lexical_query(query, doc_weight=options.doc_weight), vector, allowed, options)

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
        """(rowid, passage) for (rowid, score) pairs, in the given order: chunk text with article metadata.

        The passages, their articles and the articles' sentences are read in one REPEATABLE READ transaction sent
        as one pipeline (one round trip), so they show one instant. Retrieval asks for four times the passages it
        keeps (to fold copies away), so only the articles of the best quarter (at least ``_PREFETCH_MIN``) come
        along: whole texts and sentences are most of what this reads. An article read later (a passage further
        down was kept) is read on its own."""
        if not scored:
            return []
        rowids = [r for r, _ in scored]
        known = sorted(self._docs)
        of_docs = "{0} IN (SELECT doc_id FROM chunks WHERE rowid = ANY(%(first)s)) AND NOT {0} = ANY(%(known)s)"
        params = {"r": rowids, "known": known, "first": rowids[:max(_PREFETCH_MIN, len(rowids) // 4 + 2)]}
        rows, docs, sentences = self.store.read(lambda cur: pipelined(cur, [
            ("SELECT c.rowid, c.chunk_id, c.doc_id, c.start_at, c.end_at, d.title, d.source, d.published, d.url, "
             "substr(d.text, c.start_at + 1, c.end_at - c.start_at) FROM chunks c "
             "JOIN documents d ON d.id = c.doc_id WHERE c.rowid = ANY(%(r)s)", params),
            ("SELECT id, title, text, source, published, url, n_chunks FROM documents "
             f"WHERE {of_docs.format('id')}", params),
            (f"SELECT doc_id, start_at, end_at FROM sentences WHERE {of_docs.format('doc_id')} "
             "ORDER BY doc_id, seq", params),
        ], isolation="REPEATABLE READ"))
        for doc in docs:
            self._docs[doc[0]] = row_document(doc)
            self._sentences[doc[0]] = []
        for doc_id, start, end in sentences:
            self._sentences[doc_id].append(Sentence(start=start, end=end))
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
