"""Writing articles into PostgreSQL with COPY: documents, sentences, chunks with their vectors, and the BM25
postings of every chunk and article, each table in one COPY stream (binary for rows with vectors and dates, text for
the many small rows, formatted an article at a time).

A write that adds at least as many chunks as the archive holds (the first load of an archive, a migration from a
data directory) drops the large indexes first and builds them once after the load (``deferred_indexes``): an
HNSW graph and B-trees built over sorted input take a fraction of the time of millions of single inserts. Both
happen inside the writer's transaction, so a crash leaves the archive as it was; searches wait for the load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.models import DocumentWrite
from index.tokens import term_counts

__all__ = ["BULK_MIN_CHUNKS", "MAX_LEXEME_BYTES", "Terms", "deferred_indexes", "insert", "remove"]

MAX_LEXEME_BYTES = 2046  # a B-tree entry must fit a third of a page; longer "words" (base64 debris) are not indexed
BULK_MIN_CHUNKS = 5000  # below this, keeping the indexes up to date row by row is cheaper than rebuilding them
# The tables whose indexes (and foreign keys) a bulk load rebuilds: a row's index entries and key check cost more one by
# one than in one pass (the sentences of a 100k-chunk load: 6 s with their key and check, row by row).
_DEFERRED_TABLES = ("chunks", "chunk_terms", "doc_terms", "sentences")


@dataclass(frozen=True)
class Terms:
    """What BM25 keeps of one text: its length in tokens and the counts of the words an index entry can hold
    (longer "words", such as base64 debris, count in the length but are not indexed)."""

    length: int
    counts: dict[str, int]

    @classmethod
    def of(cls, text: str) -> Terms:
        counts = term_counts(text)
        return cls(sum(counts.values()), {t: c for t, c in counts.items() if len(t.encode()) <= MAX_LEXEME_BYTES})


def remove(cur: Any, doc_ids: Sequence[str]) -> set[str]:
    """Delete these articles (chunks and sentences cascade; postings deleted here), taking their words out of the
    document frequencies and their lengths out of the totals. Returns the ids that were stored."""
    ids = list(doc_ids)
    if not ids:
        return set()
    chunk_rows = "SELECT rowid FROM chunks WHERE doc_id = ANY(%(ids)s)"
    for collection, postings, rows, table, key in (("c", "chunk_terms", f"rowid IN ({chunk_rows})", "chunks", "doc_id"),
                                                   ("d", "doc_terms", "doc_id = ANY(%(ids)s)", "documents", "id")):
        cur.execute(f"UPDATE lexemes l SET df = l.df - x.n FROM (SELECT lexeme, count(*) AS n FROM {postings} "
                    f"WHERE {rows} GROUP BY lexeme) x WHERE l.collection = '{collection}' AND l.lexeme = x.lexeme",
                    {"ids": ids})
        cur.execute(f"UPDATE totals t SET n = t.n - x.n, terms = t.terms - x.terms FROM (SELECT count(*) AS n, "
                    f"coalesce(sum(n_terms), 0) AS terms FROM {table} WHERE {key} = ANY(%(ids)s)) x "
                    f"WHERE t.collection = '{collection}'", {"ids": ids})
        cur.execute(f"DELETE FROM {postings} WHERE {rows}", {"ids": ids})
    cur.execute("DELETE FROM lexemes WHERE df <= 0")
    return {r for (r,) in cur.execute("DELETE FROM documents WHERE id = ANY(%s) RETURNING id", (ids,)).fetchall()}


def insert(cur: Any, items: Sequence[DocumentWrite], k1: float, b: float) -> None:
    """COPY the articles, their sentences, chunks (row ids drawn from the sequence) and postings, and count the new
    words into the document frequencies and totals. Impacts use the average lengths after this write."""
    if not items:
        return
    docs = [Terms.of(f"{w.document.title}. {w.document.text}") for w in items]
    chunks = [[Terms.of(f"{w.document.title}. {w.document.text[c.start:c.end]}") for c in w.chunks] for w in items]
    totals = {c: (int(n), int(t)) for c, n, t in cur.execute("SELECT collection, n, terms FROM totals").fetchall()}
    n_docs, doc_terms = totals.get("d", (0, 0))
    n_chunks, chunk_terms = totals.get("c", (0, 0))
    new_chunks = [t for ts in chunks for t in ts]
    n_docs, doc_terms = n_docs + len(docs), doc_terms + sum(t.length for t in docs)
    n_chunks, chunk_terms = n_chunks + len(new_chunks), chunk_terms + sum(t.length for t in new_chunks)
    rowids = iter([r for (r,) in cur.execute("SELECT nextval('chunks_rowid_seq') FROM generate_series(1, %s)",
                                             (len(new_chunks),)).fetchall()])
    with cur.copy("COPY documents (id, title, text, source, published, url, n_chunks, n_terms, centroid) "
                  "FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text", "text", "date", "text", "int4", "int4", "vector"])
        for w, dt in zip(items, docs, strict=True):
            d = w.document
            copy.write_row((d.id, d.title, d.text, d.source, d.published, d.url, len(w.chunks), dt.length,
                            _centroid(w.vectors)))
    # Sentences, like postings below, in COPY's text format, an article's lines formatted at once (a Python call per
    # row took 6.8 s of a 100k-chunk load, for 450k sentences).
    with cur.copy("COPY sentences (doc_id, seq, start_at, end_at) FROM STDIN") as copy:
        for w in items:
            doc_id = _escape(w.document.id)
            copy.write("".join(f"{doc_id}\t{i}\t{sentence.start}\t{sentence.end}\n"
                               for i, sentence in enumerate(w.sentences)))
    postings: list[tuple[int, str, Terms]] = []
    with cur.copy("COPY chunks (rowid, chunk_id, doc_id, seq, start_at, end_at, embedding, n_terms) "
                  "FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "text", "int4", "int4", "int4", "vector", "int4"])
        for w, cts in zip(items, chunks, strict=True):
            for chunk, vector, ct in zip(w.chunks, w.vectors, cts, strict=True):
                rowid = next(rowids)
                copy.write_row((rowid, chunk.chunk_id, w.document.id, chunk.seq, chunk.start, chunk.end,
                                np.asarray(vector, dtype=np.float32), ct.length))
                postings.append((rowid, w.document.id, ct))
    # Postings in COPY's text format, a chunk's lines formatted at once: a tenth of the cost of a Python call per
    # row. Lexemes are word characters (no tab, newline or backslash); ids are escaped.
    avgdl = max(chunk_terms / max(n_chunks, 1), 1.0)
    with cur.copy("COPY chunk_terms (lexeme, rowid, doc_id, tf, dl, impact) FROM STDIN") as copy:
        for rowid, doc_id, ct in postings:
            norm = k1 * (1 - b + b * ct.length / avgdl)
            tail = f"\t{rowid}\t{_escape(doc_id)}\t"
            copy.write("".join(f"{lexeme}{tail}{tf}\t{ct.length}\t{tf / (tf + norm)!r}\n"
                               for lexeme, tf in ct.counts.items()))
    avgdl = max(doc_terms / max(n_docs, 1), 1.0)
    with cur.copy("COPY doc_terms (lexeme, doc_id, tf, dl, impact) FROM STDIN") as copy:
        for w, dt in zip(items, docs, strict=True):
            norm = k1 * (1 - b + b * dt.length / avgdl)
            tail = f"\t{_escape(w.document.id)}\t"
            copy.write("".join(f"{lexeme}{tail}{tf}\t{dt.length}\t{tf / (tf + norm)!r}\n"
                               for lexeme, tf in dt.counts.items()))
    for collection, terms, n, total in (("c", new_chunks, n_chunks, chunk_terms), ("d", docs, n_docs, doc_terms)):
        df: Counter[str] = Counter()
        for t in terms:
            df.update(t.counts.keys())
        cur.execute("INSERT INTO lexemes (collection, lexeme, df) SELECT %s, t, d FROM unnest(%s::text[], %s::int[]) "
                    "AS u(t, d) ON CONFLICT (collection, lexeme) DO UPDATE SET df = lexemes.df + excluded.df",
                    (collection, list(df), list(df.values())))
        cur.execute("UPDATE totals SET n = %s, terms = %s WHERE collection = %s", (n, total, collection))


def _escape(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _centroid(vectors: np.ndarray) -> np.ndarray | None:
    """An article's mean chunk vector, unit length (None for an article without chunks)."""
    if not len(vectors):
        return None
    centroid = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    return centroid / norm if norm > 0 else centroid


@contextmanager
def deferred_indexes(cur: Any, adding_chunks: int, hnsw_build: Callable[[int], tuple[int, int]]) -> Iterator[bool]:
    """Around a write of ``adding_chunks``: when that is a bulk load, drop the big tables' indexes, primary and
    foreign keys first and build (and check) them again afterwards, in the same transaction. Yields whether it did;
    the caller then runs VACUUM (ANALYZE), which cannot run inside the transaction and gives the planner the new
    sizes.

    :param hnsw_build: ``(m, ef_construction)`` for the HNSW graph of a given size (the size after the load).
    """
    stored = int(cur.execute("SELECT n FROM totals WHERE collection = 'c'").fetchone()[0])
    if adding_chunks < max(BULK_MIN_CHUNKS, stored):
        yield False
        return
    rows = cur.execute("SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname, "
                       "i.indrelid::regclass::text FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = "
                       "i.indexrelid AND c.contype = 'p' WHERE i.indrelid::regclass::text = ANY(%s) "
                       "AND (NOT i.indisunique OR c.conname IS NOT NULL)", (list(_DEFERRED_TABLES),)).fetchall()
    foreign = cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                          "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)",
                          (list(_DEFERRED_TABLES),)).fetchall()
    for table, constraint, _ in foreign:
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    for name, _, constraint, table in rows:
        if constraint:
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        else:
            cur.execute(f"DROP INDEX {name}")
    yield True
    cur.execute("SET LOCAL maintenance_work_mem = '1GB'")  # the HNSW graph of 1M chunks x 384 dims fits
    m, ef_construction = hnsw_build(stored + adding_chunks)
    for name, definition, constraint, table in rows:
        if " USING hnsw " in definition:
            definition = definition.split(" WITH ")[0] + f" WITH (m='{m}', ef_construction='{ef_construction}')"
        cur.execute(definition)
        if constraint:
            cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} PRIMARY KEY USING INDEX {name}")
    for table, constraint, definition in foreign:  # checked in one join, not a lookup per row
        cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {definition}")
