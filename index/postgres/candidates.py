"""A search's candidates in one statement: HNSW neighbours, BM25 over impact-ordered postings, and for their union
every score fusion needs (cosine, article centroid cosine, BM25 mixed with the article's), sent in one pipeline
with the HNSW settings. What ``index.retrieval.gather_candidates`` asks of the snapshot's primitives in four to
six requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from index.postgres.filters import PgRestriction, condition, merge_params
from index.postgres.lexical import PgLexicalQuery
from index.postgres.roundtrip import pipelined
from index.retrieval import Candidates, RetrievalOptions

if TYPE_CHECKING:
    from index.postgres.snapshot import PgSnapshot

__all__ = ["gather"]


def gather(snap: PgSnapshot, lex: PgLexicalQuery, vector: np.ndarray, allowed: PgRestriction | None,
           options: RetrievalOptions) -> Candidates:
    """Both signals' ``options.candidates`` best chunks and the scores of their union, in one round trip."""
    n = options.candidates
    n_dense = 0 if options.fusion == "lexical" else n
    n_lexical = 0 if options.fusion == "dense" or not lex.weights else n
    restrict = "" if allowed is None else f"JOIN documents d ON d.id = c.doc_id WHERE {condition(allowed)}"
    if lex.weights:
        lexical = lex.ctes(allowed, "SELECT rowid FROM dense")
    else:
        lexical = ("lex AS (SELECT NULL::bigint AS rowid, 0::float8 AS s WHERE false), "
                   "lex_top AS (SELECT 0.0::float8 AS c, 0.0::float8 AS d)")
    article = "-(d2.centroid <#> %(q)s)" if options.dense_doc_weight > 0 else "NULL::float8"
    sql = f"""WITH dense AS MATERIALIZED (
            SELECT c.rowid, -(c.embedding <#> %(q)s) AS s FROM chunks c {restrict}
            ORDER BY c.embedding <#> %(q)s LIMIT %(n)s),
        {lexical},
        hits AS MATERIALIZED (SELECT rowid, s FROM lex WHERE s > 0 ORDER BY s DESC, rowid LIMIT %(nl)s),
        found AS (SELECT rowid FROM dense UNION SELECT rowid FROM hits)
        SELECT f.rowid, dn.s, -(c.embedding <#> %(q)s), {article}, coalesce(lex.s, 0), h.s
        FROM found f JOIN chunks c ON c.rowid = f.rowid JOIN documents d2 ON d2.id = c.doc_id
        LEFT JOIN dense dn ON dn.rowid = f.rowid LEFT JOIN lex ON lex.rowid = f.rowid
        LEFT JOIN hits h ON h.rowid = f.rowid"""
    params: dict[str, Any] = {**lex.params(n), "q": np.asarray(vector, dtype=np.float32), "n": n_dense,
                              "nl": n_lexical}
    settings = snap.store.hnsw_settings(n, allowed is not None)
    rows = snap.store.read(lambda cur: pipelined(cur, [settings, (sql, merge_params(params, allowed))])[-1])
    dense_hits = sorted(((int(r[0]), float(r[1])) for r in rows if r[1] is not None), key=lambda h: (-h[1], h[0]))
    lexical_hits = sorted(((int(r[0]), float(r[5])) for r in rows if r[5] is not None),
                          key=lambda h: (-h[1], h[0]))
    rowids = list(dict.fromkeys([r for r, _ in dense_hits] + [r for r, _ in lexical_hits]))
    by_id = {int(r[0]): r for r in rows}
    return Candidates(
        rowids=rowids,
        dense=np.array([by_id[r][2] for r in rowids], dtype=np.float32),
        lexical=np.array([by_id[r][4] for r in rowids], dtype=np.float32),
        article=np.array([by_id[r][3] or 0.0 for r in rowids], dtype=np.float32)
        if options.dense_doc_weight > 0 else None,
        dense_hits=dense_hits, lexical_hits=lexical_hits)
