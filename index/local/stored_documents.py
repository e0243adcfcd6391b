"""Stored articles read back whole from SQLite, to be written into a new segment: by repair (vectors computed
again) and by the one-time upgrade of a format 1 data directory (vectors kept)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from index.local import ann
from index.local.segment import SegmentDoc
from index.local.snapshot import row_to_document
from index.models import Chunk, Manifest, Sentence

__all__ = ["format_1_documents", "live_documents"]


def live_documents(segments_dir: Path, manifest: Manifest, dimension: int) -> list[SegmentDoc]:
    """Every live article of a generation's segments, with its chunks' row ids and zero vectors (to embed again)."""
    docs: list[SegmentDoc] = []
    for ref in manifest.segments:
        db = sqlite3.connect(f"file:{segments_dir / ref.name / 'store.sqlite'}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        for row in db.execute("SELECT * FROM documents ORDER BY pos").fetchall():
            if row["id"] not in ref.deleted:
                docs.append(_stored_doc(db, row, lambda rowids: np.zeros((len(rowids), dimension))))
        db.close()
    return docs


def format_1_documents(gen: Path) -> tuple[list[SegmentDoc], int]:
    """The articles of a format 1 generation (one SQLite store, one FAISS index) with their vectors, and the next
    free chunk row id."""
    index = faiss.read_index(str(gen / "index.faiss"))  # held: the downcast proxy does not own it
    ids, vectors = ann.stored_vectors(index)
    at = {int(i): n for n, i in enumerate(ids.tolist())}
    db = sqlite3.connect(f"file:{gen / 'store.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    docs = [_stored_doc(db, row, lambda rowids: vectors[[at[r] for r in rowids]])
            for row in db.execute("SELECT * FROM documents ORDER BY id").fetchall()]
    db.close()
    return docs, int(ids.max(initial=0)) + 1


def _stored_doc(db: sqlite3.Connection, row: sqlite3.Row, vectors: Callable[[list[int]], np.ndarray]) -> SegmentDoc:
    """A stored article read back from a SQLite store (``row``: its documents row), to be written into a new
    segment with its chunk row ids; ``vectors`` gives the vectors of those row ids."""
    doc_id = row["id"]
    sentences = [Sentence(start=s[0], end=s[1]) for s in db.execute(
        "SELECT start, end FROM sentences WHERE doc_id = ? ORDER BY seq", (doc_id,))]
    chunk_rows = db.execute("SELECT rowid, chunk_id, seq, start, end FROM chunks WHERE doc_id = ? ORDER BY seq",
                            (doc_id,)).fetchall()
    chunks = [Chunk(chunk_id=c[1], doc_id=doc_id, seq=c[2], start=c[3], end=c[4], text=row["text"][c[3]:c[4]])
              for c in chunk_rows]
    rowids = [int(c[0]) for c in chunk_rows]
    return SegmentDoc(row_to_document(row), sentences, chunks, np.asarray(vectors(rowids), dtype=np.float32),
                      np.array(rowids, dtype=np.int64), row["added_at"])
