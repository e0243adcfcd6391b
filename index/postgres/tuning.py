"""HNSW settings chosen from the archive's size, as the FAISS backend chooses ``nprobe``.

Measured with ``benchmarks/scaleout.py`` and the recall@10 of pgvector's HNSW (m 16, ef_construction 64) against
exact search, on the same questions (AMD EPYC Zen 4, 2 cores): 10k chunks, ef_search 100 -> 0.966 (200 -> 0.991);
100k chunks, 400 -> 0.961, 500 -> 0.973. The candidate list grows as size^0.7 through those points; beyond 100k it
is extrapolated and capped, so a larger archive should measure its recall (``benchmarks/scaleout.py --size``) and
set ``ef_search`` if it falls short.
"""

from __future__ import annotations

__all__ = ["ef_search_for", "hnsw_build_parameters"]

_EF_AT_10K = 100
_EF_GROWTH = 0.7  # ef_search ~ size^0.7: 100 at 10k chunks, 500 at 100k
_EF_MAX = 1000


def hnsw_build_parameters(n_chunks: int) -> tuple[int, int]:
    """``(m, ef_construction)`` for a graph of ``n_chunks`` vectors: pgvector's defaults, whose build takes 18 s
    for 100k chunks on 2 cores (ef_construction 128 doubles that for +0.02 recall at the same ef_search)."""
    return 16, 64


def ef_search_for(n_chunks: int, top_k: int) -> int:
    """The HNSW candidate list that reaches recall@10 >= 0.95 of exact search at this size (at least ``top_k``)."""
    ef = _EF_AT_10K * (max(n_chunks, 1) / 10_000) ** _EF_GROWTH
    return int(max(top_k, min(_EF_MAX, max(_EF_AT_10K, round(ef)))))
