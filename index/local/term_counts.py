"""What a segment stores for BM25: how often each word occurs in each chunk and each whole article, with their
lengths, as column-major sparse counts (postings). Immutable once written; merging segments combines their counts
without tokenizing again. Scoring them is ``lexical.py``'s job."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from index.local.mapped import advise_random
from index.tokens import VARIANT_MIN_CHARS, count_terms

__all__ = ["Postings", "TermCounts"]



class Postings:
    """A sparse matrix stored column-major (CSC): the rows (chunks or articles) holding each word, and how often."""

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_rows: int) -> None:
        self.data, self.indices, self.indptr, self.n_rows = data, indices, indptr, n_rows

    @classmethod
    def from_coo(cls, rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_rows: int, n_cols: int
                 ) -> Postings:
        from scipy import sparse

        matrix = sparse.csc_array((counts.astype(np.float32), (rows, cols)), shape=(n_rows, n_cols))
        matrix.sum_duplicates()
        return cls(matrix.data.astype(np.float32), matrix.indices.astype(np.int32),
                   matrix.indptr.astype(np.int64), n_rows)

    def column(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[col]), int(self.indptr[col + 1])
        return self.indices[a:b], self.data[a:b]

    def df(self) -> np.ndarray:
        """Rows holding each word (deleted rows included)."""
        return np.diff(self.indptr)

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cols = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
        return np.asarray(self.indices, dtype=np.int64), cols, np.asarray(self.data)

    @cached_property
    def rows(self) -> Postings:
        """The same counts row-major (the words of each row), for feedback: built once, on first use."""
        from scipy import sparse

        n_cols = len(self.indptr) - 1
        csr = sparse.csc_array((self.data, self.indices, self.indptr), shape=(self.n_rows, n_cols)).tocsr()
        return Postings(csr.data.astype(np.float32), csr.indices.astype(np.int32), csr.indptr.astype(np.int64),
                         n_cols)

    def save(self, path: Path, name: str) -> None:
        for part in ("data", "indices", "indptr"):
            np.save(path / f"{name}_{part}.npy", getattr(self, part))

    @classmethod
    def load(cls, path: Path, name: str, n_rows: int) -> Postings:
        arrays = [np.load(path / f"{name}_{part}.npy", mmap_mode="r") for part in ("data", "indices", "indptr")]
        for array in arrays:
            advise_random(array)
        return cls(arrays[0], arrays[1], np.asarray(arrays[2]), n_rows)


class TermCounts:
    """One segment's BM25 input: how often each word occurs in each chunk and in each whole article, with their
    lengths. Immutable once written; merged segments combine theirs without tokenizing again."""

    def __init__(self, words: list[str], chunks: Postings, chunk_len: np.ndarray, rowids: np.ndarray,
                 docs: Postings | None, doc_len: np.ndarray | None, doc_of_chunk: np.ndarray) -> None:
        self.words = words
        self.vocab = {w: i for i, w in enumerate(words)}
        self.chunks, self.chunk_len = chunks, np.asarray(chunk_len, dtype=np.float32)
        self.docs = docs
        self.doc_len = np.asarray(doc_len if doc_len is not None else np.zeros(0), dtype=np.float32)
        self.rowids = np.asarray(rowids, dtype=np.int64)
        self.doc_of_chunk = np.asarray(doc_of_chunk, dtype=np.int64)
        # Row id -> position by binary search over a sorted copy: a dict of 1M Python ints took ~100 MB.
        self._rare: dict[tuple[str, int], list[str]] = {}
        self._order = np.argsort(self.rowids, kind="stable")
        self._sorted = self.rowids[self._order]

    @property
    def n_chunks(self) -> int:
        return len(self.rowids)

    @property
    def n_docs(self) -> int:
        return len(self.doc_len)

    @classmethod
    def from_tokens(cls, chunk_tokens: Sequence[list[str]], rowids: np.ndarray,
                    doc_tokens: Sequence[list[str]] | None = None,
                    doc_of_chunk: np.ndarray | None = None) -> TermCounts:
        vocab: dict[str, int] = {}

        def matrix(token_lists: Sequence[list[str]]) -> tuple[Postings, np.ndarray]:
            m = count_terms(token_lists, vocab)
            return Postings(m.counts, m.rows, m.indptr, len(token_lists)), m.lengths

        chunks, chunk_len = matrix(chunk_tokens)
        docs = doc_len = None
        if doc_tokens is not None:
            docs, doc_len = matrix(doc_tokens)
        words = [""] * len(vocab)
        for word, i in vocab.items():
            words[i] = word
        # Both matrices share one vocabulary: widen the first to the columns the second added.
        chunks = Postings(chunks.data, chunks.indices, _widen(chunks.indptr, len(words)), chunks.n_rows)
        if docs is not None:
            docs = Postings(docs.data, docs.indices, _widen(docs.indptr, len(words)), docs.n_rows)
        return cls(words, chunks, chunk_len, rowids, docs, doc_len,
                   doc_of_chunk if doc_of_chunk is not None else np.zeros(len(chunk_tokens), dtype=np.int64))

    @classmethod
    def merge(cls, parts: Sequence[tuple[TermCounts, np.ndarray, np.ndarray]], order: np.ndarray) -> TermCounts:
        """The live chunks and articles of several segments as one.

        :param parts: (counts, live chunk mask, live article mask) of each segment.
        :param order: permutation putting the concatenated live chunks in their new order (ascending row id).
        """
        vocab: dict[str, int] = {}
        chunk_rows, chunk_cols, chunk_vals, doc_rows, doc_cols, doc_vals = [], [], [], [], [], []
        lengths, rowids, doc_lengths, doc_of_chunk = [], [], [], []
        n_chunks = n_docs = 0
        for counts, live_chunks, live_docs in parts:
            col_map = np.array([vocab.setdefault(w, len(vocab)) for w in counts.words], dtype=np.int64)
            chunk_pos = np.cumsum(live_chunks) - 1 + n_chunks
            doc_pos = np.cumsum(live_docs) - 1 + n_docs
            rows, cols, vals = counts.chunks.coo()
            keep = live_chunks[rows]
            chunk_rows.append(chunk_pos[rows[keep]])
            chunk_cols.append(col_map[cols[keep]])
            chunk_vals.append(vals[keep])
            if counts.docs is not None:
                rows, cols, vals = counts.docs.coo()
                keep = live_docs[rows]
                doc_rows.append(doc_pos[rows[keep]])
                doc_cols.append(col_map[cols[keep]])
                doc_vals.append(vals[keep])
            lengths.append(counts.chunk_len[live_chunks])
            rowids.append(counts.rowids[live_chunks])
            doc_lengths.append(counts.doc_len[live_docs])
            doc_of_chunk.append(doc_pos[counts.doc_of_chunk[live_chunks]])
            n_chunks += int(live_chunks.sum())
            n_docs += int(live_docs.sum())
        inverse = np.empty(n_chunks, dtype=np.int64)
        inverse[order] = np.arange(n_chunks)  # old position -> new position
        words = [""] * len(vocab)
        for word, i in vocab.items():
            words[i] = word
        n_words = max(len(words), 1)

        def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)

        chunks = Postings.from_coo(inverse[cat(chunk_rows, np.int64)], cat(chunk_cols, np.int64),
                                    cat(chunk_vals, np.float32), n_chunks, n_words)
        docs = Postings.from_coo(cat(doc_rows, np.int64), cat(doc_cols, np.int64), cat(doc_vals, np.float32),
                                  n_docs, n_words) if doc_rows else None
        return cls(words, chunks, cat(lengths, np.float32)[order], cat(rowids, np.int64)[order], docs,
                   cat(doc_lengths, np.float32) if docs is not None else None, cat(doc_of_chunk, np.int64)[order])

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "words.json").write_text(json.dumps(self.words), encoding="utf-8")
        self.chunks.save(path, "chunks")
        np.save(path / "chunk_len.npy", self.chunk_len)
        np.save(path / "rowids.npy", self.rowids)
        np.save(path / "doc_of_chunk.npy", self.doc_of_chunk)
        if self.docs is not None:
            self.docs.save(path, "docs")
            np.save(path / "doc_len.npy", self.doc_len)

    @classmethod
    def load(cls, path: Path) -> TermCounts:
        words = json.loads((path / "words.json").read_text(encoding="utf-8"))
        rowids = np.load(path / "rowids.npy")
        chunks = Postings.load(path, "chunks", len(rowids))
        docs = doc_len = None
        if (path / "docs_indptr.npy").is_file():
            doc_len = np.load(path / "doc_len.npy")
            docs = Postings.load(path, "docs", len(doc_len))
        return cls(words, chunks, np.load(path / "chunk_len.npy"), rowids, docs, doc_len,
                   np.load(path / "doc_of_chunk.npy"))

    def positions(self, rowids: np.ndarray) -> np.ndarray:
        """Each row id's position in this segment (-1 where it holds no such chunk)."""
        if not len(self._sorted):
            return np.full(len(rowids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, rowids), len(self._sorted) - 1)
        return np.where(self._sorted[at] == rowids, self._order[at], -1).astype(np.int64)

    @cached_property
    def _variant_words(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Alphabetic words long enough to serve as spelling variants, by first letter, with their chunk counts."""
        df = self.chunks.df()
        grouped: dict[str, tuple[list[str], list[int]]] = {}
        for i, word in enumerate(self.words):
            if len(word) >= VARIANT_MIN_CHARS and word.isalpha():
                words, counts = grouped.setdefault(word[0], ([], []))
                words.append(word)
                counts.append(int(df[i]))
        return {k: (w, np.array(c, dtype=np.int64)) for k, (w, c) in grouped.items()}

    def rare_words(self, initial: str, max_df: int) -> list[str]:
        """Words of this segment that start with ``initial`` and occur in at most ``max_df`` chunks (kept: every
        search asks again, and a segment never changes)."""
        key = (initial, max_df)
        if key not in self._rare:
            words, counts = self._variant_words.get(initial, ([], np.zeros(0, dtype=np.int64)))
            if len(self._rare) > 1024:
                self._rare.clear()
            self._rare[key] = [words[i] for i in np.flatnonzero(counts <= max_df)]
        return self._rare[key]


def _widen(indptr: np.ndarray, n_cols: int) -> np.ndarray:
    """A CSC column pointer extended with empty columns up to ``n_cols``."""
    missing = n_cols + 1 - len(indptr)
    return np.concatenate([indptr, np.full(missing, indptr[-1], dtype=indptr.dtype)]) if missing > 0 else indptr
