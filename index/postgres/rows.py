"""Writing articles into PostgreSQL with COPY: documents, sentences, chunks with their vectors, and the BM25
postings of every chunk and article, each table in one COPY stream (binary for rows with vectors and dates; text for
sentences, formatted an article at a time; the postings as one binary buffer NumPy lays out, since a posting is five
or six fixed-width integers and floats).

Words are counted as the data directory counts them (``index.tokens.count_terms``: one vocabulary, a sparse
matrix per collection), so both backends hold the same term frequencies and lengths, and the postings come out of
the matrices as arrays, not a Python object per posting.

A write that adds at least as many chunks as the archive holds (the first load of an archive, a migration from a
data directory) drops the large indexes first and builds them once after the load (``deferred_indexes``): an
HNSW graph and B-trees built over sorted input take a fraction of the time of millions of single inserts. Both
happen inside the writer's transaction, so a crash leaves the archive as it was; searches wait for the load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.models import DocumentWrite
from index.tokens import count_terms, tokenize

__all__ = ["BULK_MIN_CHUNKS", "MAX_LEXEME_BYTES", "Load", "deferred_indexes", "insert", "remove"]

MAX_LEXEME_BYTES = 2046  # a B-tree entry must fit a third of a page; longer "words" (base64 debris) are not indexed
BULK_MIN_CHUNKS = 5000  # below this, keeping the indexes up to date row by row is cheaper than rebuilding them
# The tables whose indexes (and foreign keys) a bulk load rebuilds: a row's index entries and key check cost more one by
# one than in one pass (the sentences of a 100k-chunk load: 6 s with their key and check, row by row).
_DEFERRED_TABLES = ("chunks", "chunk_terms", "doc_terms", "sentences")
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_BINARY_TRAILER = b"\xff\xff"
_COPY_ROWS = 1 << 18  # postings per buffer sent


@dataclass(frozen=True)
class Load:
    """How a write loads its rows: ``bulk``, the big tables' indexes dropped and built again after it; ``frozen``,
    into an empty archive, its tables truncated in the same transaction so COPY writes the rows frozen and their
    pages all-visible (``COPY ... FREEZE``; except a page a batch began part-full), which leaves the VACUUM after
    the load little to do: on 100k chunks 2.4 s before."""

    bulk: bool = False
    frozen: bool = False

    def copy_options(self, binary: bool) -> str:
        options = (["FORMAT BINARY"] if binary else []) + (["FREEZE"] if self.frozen else [])
        return f" ({', '.join(options)})" if options else ""


def remove(cur: Any, doc_ids: Sequence[str]) -> set[str]:
    """Delete these articles (chunks and sentences cascade; postings deleted here), taking their words out of the
    document frequencies and their lengths out of the totals. Returns the ids that were stored."""
    ids = list(doc_ids)
    if not ids:
        return set()
    chunk_rows = "rowid IN (SELECT rowid FROM chunks WHERE doc_id = ANY(%(ids)s))"
    doc_rows = "docno IN (SELECT docno FROM documents WHERE id = ANY(%(ids)s))"
    for collection, postings, rows, table, key in (("c", "chunk_terms", chunk_rows, "chunks", "doc_id"),
                                                   ("d", "doc_terms", doc_rows, "documents", "id")):
        cur.execute(f"UPDATE lexemes l SET df = l.df - x.n FROM (SELECT term, count(*) AS n FROM {postings} "
                    f"WHERE {rows} GROUP BY term) x WHERE l.id = x.term", {"ids": ids})
        cur.execute(f"UPDATE totals t SET n = t.n - x.n, terms = t.terms - x.terms FROM (SELECT count(*) AS n, "
                    f"coalesce(sum(n_terms), 0) AS terms FROM {table} WHERE {key} = ANY(%(ids)s)) x "
                    f"WHERE t.collection = '{collection}'", {"ids": ids})
        cur.execute(f"DELETE FROM {postings} WHERE {rows}", {"ids": ids})
    cur.execute("DELETE FROM lexemes WHERE df <= 0")
    return {r for (r,) in cur.execute("DELETE FROM documents WHERE id = ANY(%s) RETURNING id", (ids,)).fetchall()}


def insert(cur: Any, items: Sequence[DocumentWrite], k1: float, b: float, load: Load = Load()) -> None:
    """COPY the articles, their sentences, chunks (row ids and article numbers drawn from the sequences) and
    postings, and count the new words into the document frequencies and totals. Impacts use the average lengths
    after this write."""
    if not items:
        return
    n_new = sum(len(w.chunks) for w in items)
    vocab: dict[str, int] = {}
    chunk_counts = count_terms([tokenize(f"{w.document.title}. {w.document.text[c.start:c.end]}")
                                for w in items for c in w.chunks], vocab)
    doc_counts = count_terms([tokenize(f"{w.document.title}. {w.document.text}") for w in items], vocab)
    words = list(vocab)  # in id order
    chunk_len, doc_len = chunk_counts.lengths, doc_counts.lengths
    totals = {c: (int(n), int(t)) for c, n, t in cur.execute("SELECT collection, n, terms FROM totals").fetchall()}
    n_docs, doc_terms = totals.get("d", (0, 0))
    n_chunks, chunk_terms = totals.get("c", (0, 0))
    n_docs, doc_terms = n_docs + len(items), doc_terms + int(doc_len.sum())
    n_chunks, chunk_terms = n_chunks + n_new, chunk_terms + int(chunk_len.sum())
    rowids = _draw(cur, "chunks_rowid_seq", n_new)
    docnos = _draw(cur, "documents_docno_seq", len(items))
    with cur.copy("COPY documents (id, docno, title, text, source, published, url, n_chunks, n_terms, centroid) "
                  f"FROM STDIN{load.copy_options(binary=True)}") as copy:
        copy.set_types(["text", "int4", "text", "text", "text", "date", "text", "int4", "int4", "vector"])
        for w, docno, length in zip(items, docnos.tolist(), doc_len.tolist(), strict=True):
            d = w.document
            copy.write_row((d.id, docno, d.title, d.text, d.source, d.published, d.url, len(w.chunks), length,
                            _centroid(w.vectors)))
    # Sentences in COPY's text format, an article's lines formatted at once (a Python call per row took 6.8 s of a
    # 100k-chunk load, for 450k sentences).
    with cur.copy(f"COPY sentences (doc_id, seq, start_at, end_at) FROM STDIN{load.copy_options(binary=False)}") \
            as copy:
        for w in items:
            doc_id = _escape(w.document.id)
            copy.write("".join(f"{doc_id}\t{i}\t{sentence.start}\t{sentence.end}\n"
                               for i, sentence in enumerate(w.sentences)))
    with cur.copy("COPY chunks (rowid, chunk_id, doc_id, seq, start_at, end_at, embedding, n_terms) "
                  f"FROM STDIN{load.copy_options(binary=True)}") as copy:
        copy.set_types(["int8", "text", "text", "int4", "int4", "int4", "vector", "int4"])
        rows = iter(zip(rowids.tolist(), chunk_len.tolist(), strict=True))
        for w in items:
            for chunk, vector in zip(w.chunks, w.vectors, strict=True):
                rowid, length = next(rows)
                copy.write_row((rowid, chunk.chunk_id, w.document.id, chunk.seq, chunk.start, chunk.end,
                                np.asarray(vector, dtype=np.float32), length))
    doc_of_chunk = np.repeat(docnos, [len(w.chunks) for w in items])
    for collection, matrix, n, total in (("c", chunk_counts, n_chunks, chunk_terms),
                                         ("d", doc_counts, n_docs, doc_terms)):
        df = np.diff(matrix.indptr)  # over the words known when this collection was counted: the rest are in none
        df = np.pad(df, (0, max(0, len(words) - len(df))))
        terms = _term_ids(cur, collection, words, df)
        cols = matrix.words()
        keep = terms[cols] >= 0  # words too long for an index entry count in lengths only
        # each posting's owner (the chunk or article, by position in this write), word id and count
        owners, term, tf = matrix.rows[keep], terms[cols[keep]], matrix.counts[keep]
        dl = matrix.lengths[owners]
        avgdl = max(total / max(n, 1), 1.0)
        impact = (tf / (tf + k1 * (1 - b + b * dl / avgdl))).astype(np.float32)
        order = np.lexsort((-impact, term))  # the impact index's order: its build then sorts sorted input
        owners, term, tf, dl, impact = owners[order], term[order], tf[order], dl[order], impact[order]
        if collection == "c":
            _copy_binary(cur, "COPY chunk_terms (rowid, term, docno, tf, dl, impact) FROM STDIN"
                         f"{load.copy_options(binary=True)}",
                         [(">i8", rowids[owners]), (">i4", term), (">i4", doc_of_chunk[owners]), (">i4", tf),
                          (">i4", dl), (">f4", impact)])
        else:
            _copy_binary(cur, "COPY doc_terms (docno, term, tf, dl, impact) FROM STDIN"
                         f"{load.copy_options(binary=True)}",
                         [(">i4", docnos[owners]), (">i4", term), (">i4", tf), (">i4", dl), (">f4", impact)])
        cur.execute("UPDATE totals SET n = %s, terms = %s WHERE collection = %s", (n, total, collection))


def _draw(cur: Any, sequence: str, n: int) -> np.ndarray:
    """``n`` values of a sequence (one round trip)."""
    return np.array([r for (r,) in cur.execute(f"SELECT nextval('{sequence}') FROM generate_series(1, %s)",
                                               (n,)).fetchall()], dtype=np.int64)


def _term_ids(cur: Any, collection: str, words: list[str], df: np.ndarray) -> np.ndarray:
    """Add each word's new document frequency ``df`` to ``lexemes`` (a new word gets an id) and return every word's
    id in this collection, -1 for words not in it or too long to index."""
    present = [i for i in np.flatnonzero(df).tolist() if len(words[i].encode()) <= MAX_LEXEME_BYTES]
    ids = cur.execute("INSERT INTO lexemes (collection, lexeme, df) SELECT %s, t, d FROM unnest(%s::text[], "
                      "%s::int[]) AS u(t, d) ON CONFLICT (collection, lexeme) DO UPDATE SET df = lexemes.df + "
                      "excluded.df RETURNING lexeme, id",
                      (collection, [words[i] for i in present], df[present].tolist())).fetchall()
    by_word = dict(ids)
    terms = np.full(len(words), -1, dtype=np.int64)
    terms[present] = [by_word[words[i]] for i in present]
    return terms


def _copy_binary(cur: Any, statement: str, columns: list[tuple[str, np.ndarray]]) -> None:
    """COPY rows of fixed-width columns in PostgreSQL's binary format, laid out by NumPy in one buffer: per row
    a field count, then each field's byte length and big-endian value."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, (dtype, _) in enumerate(columns):
        fields += [(f"len{i}", ">i4"), (f"v{i}", dtype)]
    rows = np.empty(len(columns[0][1]), dtype=np.dtype(fields))
    rows["count"] = len(columns)
    for i, (dtype, values) in enumerate(columns):
        rows[f"len{i}"] = np.dtype(dtype).itemsize
        rows[f"v{i}"] = values
    with cur.copy(statement) as copy:
        copy.write(_BINARY_HEADER)
        for start in range(0, len(rows), _COPY_ROWS):  # a slice at a time: the whole would be a second copy
            copy.write(rows[start:start + _COPY_ROWS].tobytes())
        copy.write(_BINARY_TRAILER)


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
def deferred_indexes(cur: Any, adding_chunks: int, hnsw_build: Callable[[int], tuple[int, int]]) -> Iterator[Load]:
    """Around a write of ``adding_chunks``: when that is a bulk load, drop the big tables' indexes, primary and
    foreign keys first and build (and check) them again afterwards, in the same transaction. Yields how the rows
    are to be loaded. After a bulk load the caller runs VACUUM (ANALYZE), which cannot run inside the transaction
    and marks the pages all-visible that COPY FREEZE did not (all of them, when the archive was not empty).

    :param hnsw_build: ``(m, ef_construction)`` for the HNSW graph of a given size (the size after the load).
    """
    stored = int(cur.execute("SELECT n FROM totals WHERE collection = 'c'").fetchone()[0])
    if adding_chunks < max(BULK_MIN_CHUNKS, stored):
        yield Load()
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
    empty = not cur.execute("SELECT EXISTS (SELECT 1 FROM documents)").fetchone()[0]
    if empty:  # no foreign key points at these tables now (theirs were dropped above)
        cur.execute(f"TRUNCATE documents, {', '.join(_DEFERRED_TABLES)}")
    yield Load(bulk=True, frozen=empty)
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
