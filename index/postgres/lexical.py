"""BM25 in SQL over impact-ordered postings, at a cost that does not grow with the postings of common words.

For each query word the ``cut`` postings with the highest impact are read from the front of one index range
(``chunk_terms_impact``, ``doc_terms_impact``) with their exact contributions. A word with fewer postings than
that is read whole, so a query of names and rare terms loses nothing; the front of a common word holds the chunks
where it weighs most, and a chunk outside it gains at most that word's ``cut``-th contribution from it. A word in
more than ``COMMON`` of the chunks ("who", "said") reads no front at all unless it is among the query's ``KEEP``
rarest: its fronts cost the most and decide the least. The ``pool`` chunks with the best partial sums (mixed with
their article's partial sum when whole-article BM25 is mixed in, so a chunk of a strong article gets in on its
article's account), the chunks of the ``top_k`` best articles and any extra rows asked for (the dense candidates)
are then scored exactly: the fronts of uncut words plus one primary-key probe per cut word.
``benchmarks/scaleout.py`` measures how much of exact BM25's top 10 and top 100 this finds at 10k and 100k chunks.

The SQL is built here as CTEs that ``PgLexicalQuery`` runs alone and ``index.postgres.candidates`` embeds in the one
statement of a search. Scores are BM25 as bm25s computes it without its constant ``k1 + 1`` factor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from index.postgres.filters import PgRestriction, condition, merge_params

if TYPE_CHECKING:
    from index.postgres.snapshot import PgSnapshot

__all__ = ["CUT", "POOL", "PgLexicalQuery", "lexical_ctes"]

CUT = 1000  # postings read per query word (all of a rarer word's)
POOL = 300  # chunks (and articles) scored exactly from the partial sums
COMMON = 0.05  # a word in more than this share of the chunks (and more than CUT) adds no candidates of its own
KEEP = 3  # ... unless it is among the query's rarest three (it is still scored exactly)


def lexical_ctes(k1: float, b: float, doc_weight: float, allowed: PgRestriction | None,
                 extra_rowids: str | None = None) -> str:
    """CTEs ending in ``lex (rowid, s)``: the lexical candidates with their exact (mixed) scores, and
    ``lex_top (c, d)``: the best chunk and article scores (what mixed scores are scaled by).

    Parameters it reads: ``%(terms)s``, ``%(weights)s``, ``%(cut)s``, ``%(pool)s``, ``%(k)s`` and the filter's.
    :param extra_rowids: a SQL set of more row ids to score (the dense candidates), or None.
    """
    cond = condition(allowed)
    doc_join = "" if allowed is None else "JOIN documents d ON d.docno = p.docno"

    def bm25(alias: str, q: str) -> str:
        return f"{q}.idfw * {alias}.tf / ({alias}.tf + {k1} * (1 - {b} + {b} * {alias}.dl / {q}.avgdl))"

    def words(collection: str) -> str:
        """The query words with their idf (times the word's weight), the average length, and whether the word has
        more postings than the cut reads."""
        return f"""SELECT term, idfw, avgdl, reads, df > reads AS cut FROM (
                   SELECT l.id AS term, w.weight * ln(1 + (t.n - l.df + 0.5) / (l.df + 0.5)) AS idfw,
                          t.terms::float8 / greatest(t.n, 1) AS avgdl, l.df,
                          CASE WHEN row_number() OVER (ORDER BY l.df) <= %(keep)s
                                    OR l.df <= greatest(%(common)s * t.n, %(cut)s) THEN %(cut)s ELSE 0 END AS reads
                   FROM unnest(%(terms)s::text[], %(weights)s::float8[]) AS w(lexeme, weight)
                   JOIN lexemes l ON l.collection = '{collection}' AND l.lexeme = w.lexeme
                   JOIN totals t ON t.collection = '{collection}') x"""

    def front(table: str, cols: list[str], q: str) -> str:
        """Each word's ``cut`` best postings by impact, with their exact contribution."""
        return f"""SELECT {", ".join("x." + c for c in cols)}, {q}.cut, {bm25('x', q)} AS s FROM {q}
                   CROSS JOIN LATERAL (SELECT {", ".join("p." + c for c in cols)}, p.tf, p.dl
                                       FROM {table} p {doc_join} WHERE p.term = {q}.term AND {cond}
                                       ORDER BY p.impact DESC LIMIT {q}.reads) x"""

    def exact(keys: str, key: str, hits: str, table: str, q: str) -> str:
        """The exact score of each ``key`` in ``keys``: what the fronts of uncut words hold (all their postings),
        plus one primary-key probe per cut word. The probe is a LATERAL subquery with LIMIT 1, which the planner
        cannot turn into a hash join over every posting of a common word."""
        return f"""SELECT u.{key}, sum(u.s) AS s FROM (
                       SELECT h.{key}, h.s FROM {hits} h WHERE NOT h.cut AND h.{key} IN (SELECT {key} FROM {keys})
                       UNION ALL
                       SELECT k.{key}, {bm25('p', q)} FROM {keys} k CROSS JOIN {q} CROSS JOIN LATERAL (
                           SELECT p.tf, p.dl FROM {table} p WHERE p.term = {q}.term AND p.{key} = k.{key}
                           LIMIT 1) p WHERE {q}.cut) u
                   GROUP BY u.{key}"""

    extra = f" UNION SELECT rowid FROM ({extra_rowids}) e" if extra_rowids else ""
    chunk_side = f"""qc AS MATERIALIZED ({words('c')}),
        hc AS MATERIALIZED ({front('chunk_terms', ['rowid', 'docno'], 'qc')})"""
    w = doc_weight
    if w <= 0:
        return f"""{chunk_side},
            ctop AS MATERIALIZED (SELECT rowid FROM hc GROUP BY rowid ORDER BY sum(s) DESC LIMIT %(pool)s),
            cand AS MATERIALIZED (SELECT rowid FROM ctop{extra}),
            cs AS MATERIALIZED ({exact('cand', 'rowid', 'hc', 'chunk_terms', 'qc')}),
            lex_top AS (SELECT coalesce((SELECT max(s) FROM cs), 0) AS c, 0.0::float8 AS d),
            lex AS (SELECT cs.rowid, cs.s FROM cs)"""
    return f"""{chunk_side},
        qd AS MATERIALIZED ({words('d')}),
        hd AS MATERIALIZED ({front('doc_terms', ['docno'], 'qd')}),
        pd AS MATERIALIZED (SELECT docno, sum(s) AS s FROM hd GROUP BY docno),
        dtop AS MATERIALIZED (SELECT docno FROM pd ORDER BY s DESC LIMIT %(pool)s),
        pc AS MATERIALIZED (SELECT rowid, docno, sum(s) AS s FROM hc GROUP BY rowid, docno),
        ctop AS MATERIALIZED (  -- ranked by the same mix of partial sums, so chunks of strong articles get in
            SELECT pc.rowid FROM pc LEFT JOIN pd ON pd.docno = pc.docno
            CROSS JOIN (SELECT greatest((SELECT max(s) FROM pc), 1e-9) AS c,
                               greatest((SELECT max(s) FROM pd), 1e-9) AS d) m
            ORDER BY {1 - w} * pc.s / m.c + {w} * coalesce(pd.s, 0) / m.d DESC LIMIT %(pool)s),
        bd AS MATERIALIZED (SELECT * FROM ({exact('dtop', 'docno', 'hd', 'doc_terms', 'qd')}) x
                            ORDER BY s DESC LIMIT %(k)s),
        cand AS MATERIALIZED (SELECT rowid FROM ctop
                              UNION SELECT c.rowid FROM bd JOIN documents d ON d.docno = bd.docno
                                    JOIN chunks c ON c.doc_id = d.id{extra}),
        kd AS MATERIALIZED (SELECT k.rowid, d.docno FROM cand k JOIN chunks c ON c.rowid = k.rowid
                            JOIN documents d ON d.id = c.doc_id),
        cdocs AS MATERIALIZED (SELECT DISTINCT docno FROM kd WHERE docno NOT IN (SELECT docno FROM bd)),
        cs AS MATERIALIZED ({exact('cand', 'rowid', 'hc', 'chunk_terms', 'qc')}),
        ds AS MATERIALIZED (SELECT docno, s FROM bd
                            UNION ALL {exact('cdocs', 'docno', 'hd', 'doc_terms', 'qd')}),
        lex_top AS (SELECT coalesce((SELECT max(s) FROM cs), 0) AS c, coalesce((SELECT max(s) FROM ds), 0) AS d),
        lex AS (SELECT k.rowid, CASE WHEN t.c > 0 AND t.d > 0
                                     THEN {1 - w} * coalesce(cs.s, 0) / t.c + {w} * coalesce(ds.s, 0) / t.d
                                     ELSE coalesce(cs.s, 0) END AS s
                FROM kd k LEFT JOIN cs ON cs.rowid = k.rowid
                LEFT JOIN ds ON ds.docno = k.docno CROSS JOIN lex_top t)"""


class PgLexicalQuery:
    """BM25 of one query over chunks (and whole articles, mixed in by ``doc_weight``)."""

    def __init__(self, snap: PgSnapshot, weights: dict[str, float], doc_weight: float) -> None:
        self.snap = snap
        self.weights = weights
        self.doc_weight = doc_weight
        self.tops: tuple[float, float] | None = None  # the best chunk and article scores, for scaling

    def params(self, top_k: int) -> dict[str, object]:
        return {"terms": list(self.weights), "weights": list(self.weights.values()), "cut": CUT,
                "pool": max(POOL, 2 * top_k), "k": top_k, "keep": KEEP, "common": COMMON}

    def ctes(self, allowed: PgRestriction | None, extra_rowids: str | None = None) -> str:
        store = self.snap.store
        return lexical_ctes(store.bm25_k1, store.bm25_b, self.doc_weight, allowed, extra_rowids)

    def search(self, top_k: int, allowed: PgRestriction | None = None) -> list[tuple[int, float]]:
        """The ``top_k`` chunks with the highest score (> 0), optionally only among ``allowed``."""
        if not self.weights:
            return []
        sql = f"""WITH {self.ctes(allowed)}
            SELECT lex.rowid, lex.s, t.c, t.d FROM lex CROSS JOIN lex_top t WHERE lex.s > 0
            ORDER BY lex.s DESC, lex.rowid LIMIT %(k)s"""
        rows = self.snap.store.read(lambda cur: cur.execute(sql, merge_params(self.params(top_k), allowed))
                                    .fetchall())
        if rows:
            self.tops = (float(rows[0][2] or 0.0), float(rows[0][3] or 0.0))
        return [(int(r[0]), float(r[1])) for r in rows]

    def scores(self, rowids: list[int]) -> np.ndarray:
        """The score of each of ``rowids`` (0 for chunks the query does not match), scaled as ``search``'s."""
        if not rowids or not self.weights:
            return np.zeros(len(rowids), dtype=np.float32)
        sql = f"""WITH {self.ctes(None, "SELECT unnest(%(rowids)s::bigint[]) AS rowid")}
            SELECT lex.rowid, lex.s, t.c, t.d FROM lex CROSS JOIN lex_top t WHERE lex.rowid = ANY(%(rowids)s)"""
        params: dict[str, Any] = {**self.params(len(rowids)), "rowids": rowids}
        rows = self.snap.store.read(lambda cur: cur.execute(sql, params).fetchall())
        found = {int(r[0]): float(r[1]) for r in rows}
        return np.array([found.get(r, 0.0) for r in rowids], dtype=np.float32)
