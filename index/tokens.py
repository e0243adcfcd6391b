"""Words as both backends' BM25 sees them: folded, stop-listed, Snowball-stemmed tokens, their counts, and the
spelling-variant rules (a query word matched to rare corpus words that look alike, at reduced weight). Shared by the
data directory (``index.local.lexical``) and PostgreSQL (``index.postgres.store``), so they rank alike."""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

from rapidfuzz import fuzz, process

if TYPE_CHECKING:
    import numpy as np

__all__ = ["VARIANT_MAX_DF", "VARIANT_MIN_CHARS", "VARIANT_WEIGHT", "TermMatrix", "closest_variants", "count_terms",
           "may_have_variants", "tokenize"]

VARIANT_MIN_CHARS = 5  # shorter words have too many look-alikes to expand safely


@lru_cache(maxsize=1)
def _bm25s() -> ModuleType:
    """bm25s (for its English stopword list), imported at first use: it brings SciPy, ~0.2 s of import that `ask`
    through a running service (which imports this module only for the API's types) does not need."""
    import bm25s

    # bm25s sets its own logger to DEBUG when imported, so every index build printed "Building index from tokens"
    # past the application's WARNING level for libraries; NOTSET hands the decision back to the root logger's
    # configuration.
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    _bm25s()  # the package first, so its logger is reset
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_WORD = re.compile(r"\w+", re.UNICODE)
VARIANT_MIN_RATIO = 80.0  # "sednaya" ~ "saydnaya" scores 80; "report" ~ "resort" 83 but is caught by the df rule
VARIANT_WEIGHT = 0.8  # a variant counts a little less than the word as typed
VARIANT_MAX_DF = 0.01  # only rare corpus words (names, places) serve as variants


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _combining_marks() -> dict[int, None]:
    """A ``str.translate`` table deleting every combining character (about 900 code points; 0.05 s to build)."""
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))}


def _fold(text: str) -> str:
    """Lower-case and strip accents, so "Sednaya", "SEDNAYA" and "Sédnaya" are one word. ASCII text (most of an
    English archive) has nothing to decompose; the rest loses its combining marks in one C-level pass."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFKD", folded).translate(_combining_marks())


def tokenize(text: str) -> list[str]:
    """Folded, stemmed content words of ``text`` (stopwords removed)."""
    stopwords = _stopwords()
    words = [w for w in _WORD.findall(_fold(text)) if w not in stopwords]
    return list(_stemmer().stemWords(words))


class TermMatrix(NamedTuple):
    """How often each word occurs in each of many texts: a sparse matrix stored by word (CSC: word ``i``'s texts are
    ``rows[indptr[i]:indptr[i + 1]]``, ascending, with their ``counts``), and each text's length in tokens."""

    counts: np.ndarray
    rows: np.ndarray
    indptr: np.ndarray
    lengths: np.ndarray

    def words(self) -> np.ndarray:
        """The word of each entry (parallel to ``rows`` and ``counts``)."""
        import numpy as np

        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))


def count_terms(token_lists: Sequence[list[str]], vocab: dict[str, int]) -> TermMatrix:
    """The term matrix of many texts at once, over the words of ``vocab`` (a word's id; new words are added to it).
    Both backends count with it, so their BM25 sees the same frequencies and lengths."""
    import numpy as np
    from scipy import sparse

    lengths = np.array([len(t) for t in token_lists], dtype=np.int64)  # float32 sums lose counts past 2^24
    cols = np.fromiter((vocab.setdefault(t, len(vocab)) for tokens in token_lists for t in tokens),
                       dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    matrix = sparse.csc_array((np.ones(len(cols), np.float32), (rows, cols)),
                              shape=(len(token_lists), max(len(vocab), 1)))
    matrix.sum_duplicates()
    return TermMatrix(matrix.data.astype(np.float32), matrix.indices.astype(np.int32),
                      matrix.indptr.astype(np.int64), lengths)


def may_have_variants(token: str, df: int, max_df: int) -> bool:
    """Whether a query word is worth expanding: long, alphabetic, and not common in the corpus (a word the corpus
    uses often is taken as correctly spelled)."""
    return len(token) >= VARIANT_MIN_CHARS and token.isalpha() and df <= max_df


def closest_variants(token: str, choices: list[str]) -> list[str]:
    """Up to three of ``choices`` spelled like ``token`` (rapidfuzz ratio >= 80), best first."""
    found = process.extract(token, choices, scorer=fuzz.ratio, score_cutoff=VARIANT_MIN_RATIO, limit=3)
    return [w for w, _, _ in found if w != token]
