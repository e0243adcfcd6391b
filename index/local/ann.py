"""Which FAISS index holds a generation's vectors: exact search up to a size, an IVF index with compact codes above.

Exact search (``IndexFlatIP`` in ``IndexIDMap2``) costs one pass over every vector per query: fine up to tens of
thousands of chunks, too slow and too big (1.5 GB of float32 at 1M chunks) beyond. Above ``exact_max`` chunks the
vectors move to ``IndexIVFScalarQuantizer`` (8-bit codes, a quarter of the memory, or fp16: ``codes``) with a
hash-table direct map, because every write of the data directory needs add and remove by chunk id and
``reconstruct`` (HNSW in FAISS has no removal). Its ``nprobe`` is tuned each time a generation is published: the
smallest setting whose recall@10 against exact search, on queries made from stored vectors plus noise, is at least
``target_recall``, times a margin for real questions (which sit farther from every passage than any synthetic
query), and at least ``min_probe_fraction`` of the lists.

Above ``refine_min`` chunks a query runs in two steps: a second IVF index over the same lists with 4-bit codes
(``candidates.faiss``, an eighth of float32, rebuilt at every publish) picks ``REFINE_FACTOR`` times the wanted
hits (at least 100), and their fp16 codes in the main index re-rank them. A query probing 3/8 of the lists then
scans ~75 MB of codes at 1M chunks instead of ~290 MB, and the codes a service must keep in memory for its scans
are a quarter of the fp16 index (docs/performance.md); the 4-bit scan is slower per vector (FAISS p50 at 1M
chunks 16 ms against 11 ms).

Loading for queries memory-maps the file (``IO_FLAG_MMAP_IFC`` for flat codes, ``IO_FLAG_MMAP`` for inverted
lists), so start-up does not copy the index and processes share the pages.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal, cast

import faiss
import numpy as np
from pydantic import BaseModel, Field

__all__ = ["AnnSettings", "exact_top", "fit_candidates", "fit_index", "index_kind", "ivf_ids", "load_for_queries",
           "new_exact_index", "recall_at_k", "search", "stored_vectors"]

logger = logging.getLogger(__name__)

# Real questions are harder than the tuning queries: on 100k news chunks, NewsQA questions reached recall@10 0.970
# with 8-bit codes at twice the tuned nprobe and 0.988 at four times. With fp16 codes twice was 0.990 at 100k but
# 0.962-0.980 at 1M chunks in 512 lists (the lists an index grown from 250k keeps); three times gave 0.9935 there.
# A margin alone is not enough: at 1M the tuning queries settled on nprobe 32 in one run (x3 = 96 lists, real
# recall 0.962) and 64 in another. What real questions needed was a share of the lists: 128 of 256 (0.990) and
# 192 of 256 (0.9995) at 100k, 128 of 512 (0.980) and 192 of 512 (0.994) at 1M; hence the floor of 3/8 of the
# lists (``AnnSettings.min_probe_fraction``). See ``_tune_nprobe`` and docs/performance.md.
PROBE_MARGIN = {"sq8": 4, "fp16": 3}
_QTYPES = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}
_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Two-step search: 4-bit candidates, fp16 re-ranking. On 1M chunks (benchmarks/perf.py's corpus) with real questions
# at nprobe 384 of 1,024, sharing the fp16 index's lists: recall@10 0.9985 from 100 candidates (as the fp16 index
# alone; 50 gave 0.990, 30 0.969), and for the 100 dense hits that hybrid retrieval takes, recall@100 0.9966 from
# 300 (one step: 0.9974; 200 gave 0.988, 100 0.845). Product quantization (96 bytes) needed 600 for recall@10 0.988.
# Every candidate is one scattered read of the fp16 codes, so no more than that: 1,000 took 50 ms a query.
REFINE_FACTOR = 3
REFINE_MIN_CANDIDATES = 100


class AnnSettings(BaseModel):
    """When to leave exact search, and how good the approximate index must stay."""

    exact_max: int = Field(default=50_000, ge=0, description="Largest collection searched exactly (flat index).")
    target_recall: float = Field(default=0.98, gt=0.0, le=1.0, description="recall@10 against exact search.")
    codes: Literal["sq8", "fp16"] = Field(
        default="fp16", description="IVF vector codes: fp16 (1/2 of float32) or 8-bit (1/4). At 1M chunks 8-bit "
        "codes cap recall@10 at ~0.977 even probing every list; fp16 reached 0.999 (docs/performance.md).")
    min_probe_fraction: float = Field(
        default=0.375, ge=0.0, le=1.0, description="Least share of the IVF lists every query probes, whatever the "
        "tuning chose (real questions reached recall@10 0.994 at 3/8 of 512 lists over 1M chunks).")
    refine_min: int = Field(
        default=200_000, ge=0, description="IVF collections at least this large are searched in two steps: 4-bit "
        "codes in the same lists pick candidates, the fp16 codes re-rank them (0 = always, for IVF).")
    tuning_queries: int = Field(default=256, ge=16, le=10_000)
    seed: int = 0


def new_exact_index(dimension: int) -> faiss.Index:
    """An empty exact inner-product index addressed by chunk row id."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def index_kind(index: faiss.Index) -> str:
    """``flat`` or ``ivf``: what this module built (other kinds are reported by their class name)."""
    concrete = faiss.downcast_index(index)
    if isinstance(concrete, faiss.IndexIDMap2):
        return "flat"
    if isinstance(concrete, faiss.IndexIVF):
        return "ivf"
    return type(concrete).__name__


def _nlist_for(n: int) -> int:
    """About sqrt(n) lists, as a power of two: ~sqrt(n) vectors per list keeps coarse and fine work balanced."""
    return int(min(4096, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def ivf_ids(index: faiss.Index) -> np.ndarray:
    """The ids stored in an IVF index's lists, list by list (needs no direct map, so it works on candidates too)."""
    ivf = cast("faiss.IndexIVF", faiss.downcast_index(index))
    invlists = ivf.invlists
    assert invlists is not None
    parts = [faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
             for lst in range(ivf.nlist) if invlists.list_size(lst)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def stored_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of everything in ``index``; for IVF the vectors are decoded from their codes."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        inner = faiss.downcast_index(index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), np.float32)
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(index, faiss.IndexIVF):
        ids = ivf_ids(index)
        vectors = index.reconstruct_batch(ids) if ids.size else np.zeros((0, index.d), np.float32)
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)
    raise TypeError(f"cannot read vectors back from a {type(index).__name__}")


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions) of the exact top-k rows for each query (brute force)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    scores, positions = flat.search(queries, k)
    return scores, positions


def recall_at_k(approx_ids: np.ndarray, exact_scores: np.ndarray, approx_scores_exact: np.ndarray) -> float:
    """Share of approximate hits scoring at least the exact k-th score (tie-aware recall@k).

    :param approx_ids: (q, k) ids the approximate index returned (-1 for none).
    :param exact_scores: (q, k) exact scores of the true top-k, best first.
    :param approx_scores_exact: (q, k) exact scores of the returned ids.
    """
    kth = exact_scores[:, -1:] - 1e-5
    hits = (approx_scores_exact >= kth) & (approx_ids >= 0)
    return float(hits.sum() / approx_ids.size)


def _tuning_queries(vectors: np.ndarray, settings: AnnSettings) -> np.ndarray:
    """Stored vectors plus much noise: cosine ~0.37 to their origin, as far as real questions sit from their best
    passage (NewsQA questions over news chunks: mean top-1 cosine 0.37)."""
    rng = np.random.default_rng(settings.seed)
    picks = rng.choice(len(vectors), size=min(settings.tuning_queries, len(vectors)), replace=False)
    noise = rng.normal(scale=2.5 / math.sqrt(vectors.shape[1]), size=(len(picks), vectors.shape[1]))
    queries = vectors[picks] + noise.astype(np.float32)
    return np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)


def _tune_nprobe(ivf: faiss.IndexIVF, ids: np.ndarray, vectors: np.ndarray, settings: AnnSettings,
                 k: int = 10) -> float:
    """Set the smallest ``nprobe`` reaching the target recall@k; returns the recall reached."""
    queries = _tuning_queries(vectors, settings)
    k = min(k, len(vectors))
    exact_scores, _ = exact_top(vectors, queries, k)
    position_of = {int(i): p for p, i in enumerate(ids)}
    recall = 0.0
    for nprobe in (p for p in _NPROBES if p <= ivf.nlist):
        ivf.nprobe = nprobe
        _, found = ivf.search(queries, k)
        found_pos = np.vectorize(lambda i: position_of.get(int(i), -1), otypes=[np.int64])(found)
        found_scores = np.einsum("qd,qkd->qk", queries, vectors[np.maximum(found_pos, 0)])
        recall = recall_at_k(found_pos, exact_scores, found_scores)
        if recall >= settings.target_recall:
            break
    # Real questions are harder still (on 10k real news chunks they reached recall@10 0.976 with the nprobe these
    # queries chose, 0.994 with twice that): probe a margin more, larger for the lossier codes, and never fewer
    # than a fixed share of the lists (the tuned value alone varied 2x between runs at 1M chunks).
    floor = math.ceil(settings.min_probe_fraction * ivf.nlist)
    ivf.nprobe = min(ivf.nlist, max(floor, PROBE_MARGIN[settings.codes] * ivf.nprobe))
    logger.info("IVF index: nlist=%d nprobe=%d recall@%d=%.3f over %d vectors", ivf.nlist, ivf.nprobe, k, recall,
                len(vectors))
    return recall


def _build_ivf(ids: np.ndarray, vectors: np.ndarray, settings: AnnSettings) -> faiss.IndexIVF:
    d = vectors.shape[1]
    nlist = _nlist_for(len(vectors))
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, _QTYPES[settings.codes], faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(settings.seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 64 * nlist), replace=False)]
    ivf.cp.max_points_per_centroid = 64
    ivf.train(np.ascontiguousarray(sample))
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    ivf.add_with_ids(vectors, ids)
    return ivf


def _owning_ivf(index: faiss.Index) -> faiss.IndexIVF:
    """``index`` as an IVF proxy that owns the C++ object: ``downcast_index`` returns a non-owning proxy, and the
    caller drops ``index`` once it has the fitted index back, which would free the object under it."""
    if isinstance(index, faiss.IndexIVF):
        return index
    concrete = cast("faiss.IndexIVF", faiss.downcast_index(index))
    if getattr(index, "thisown", False):  # SWIG's ownership flag (not in FAISS's type stubs)
        setattr(index, "thisown", False)  # noqa: B010
        setattr(concrete, "thisown", True)  # noqa: B010
    return concrete


def fit_index(index: faiss.Index, settings: AnnSettings) -> faiss.Index:
    """The index a generation of ``index.ntotal`` vectors should be published with (rebuilt only when needed).

    Flat stays flat up to ``exact_max``; above it the vectors move to IVF (and back to flat if the collection
    shrinks below half of ``exact_max``); an IVF index is rebuilt when the collection has grown or shrunk 4x
    since its lists were made or the code setting changed, and its ``nprobe`` is re-tuned on every publish.
    """
    n, kind = index.ntotal, index_kind(index)
    if kind == "flat" and n <= settings.exact_max:
        return index
    ids, vectors = stored_vectors(index)
    if n <= settings.exact_max // 2 or n < 64:
        flat = new_exact_index(index.d)
        if n:
            flat.add_with_ids(vectors, ids)
        return flat
    ivf = _owning_ivf(index) if kind == "ivf" else None
    same_codes = ivf is not None and getattr(ivf, "sq", None) is not None \
        and ivf.sq.qtype == _QTYPES[settings.codes]  # type: ignore[attr-defined]
    if ivf is None or not same_codes or not 0.25 <= _nlist_for(n) / ivf.nlist <= 4:
        ivf = _build_ivf(ids, vectors, settings)
    _tune_nprobe(ivf, ids, vectors, settings)
    return ivf


def fit_candidates(index: faiss.Index, settings: AnnSettings) -> faiss.IndexIVF | None:
    """The 4-bit candidate index of a large IVF generation, or None where one step is enough (flat, or small).

    It shares the main index's lists (a copy of its coarse quantizer) and ``nprobe``, so a query probes the same
    lists in both and the re-ranking by fp16 codes only corrects the 4-bit codes' error. Rebuilt from the main
    index at every publish, it needs no add or remove of its own (hence no direct map).
    """
    if index_kind(index) != "ivf" or index.ntotal < max(1, settings.refine_min):
        return None
    ivf = cast("faiss.IndexIVF", faiss.downcast_index(index))
    ids, vectors = stored_vectors(ivf)
    quantizer = faiss.clone_index(ivf.quantizer)
    candidates = faiss.IndexIVFScalarQuantizer(quantizer, ivf.d, ivf.nlist, faiss.ScalarQuantizer.QT_4bit,
                                               faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(settings.seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 64 * ivf.nlist), replace=False)]
    candidates.train(np.ascontiguousarray(sample))  # the quantizer is trained: only the 4-bit ranges are fitted
    candidates.add_with_ids(vectors, ids)
    candidates.nprobe = ivf.nprobe
    logger.info("IVF candidates: 4-bit codes over %d lists, nprobe=%d", ivf.nlist, ivf.nprobe)
    return candidates


def load_for_queries(path: Path) -> faiss.Index:
    """Read an index for searching, memory-mapped where FAISS can (read-only; writers use ``faiss.read_index``)."""
    for flags in (faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY):
        try:
            return faiss.read_index(str(path), flags)
        except RuntimeError:
            continue
    return faiss.read_index(str(path))


def _filtered(index: faiss.Index, allowed: np.ndarray | None, excluded: np.ndarray | None = None
              ) -> tuple[faiss.SearchParameters, list[object]]:
    """Search parameters keeping to ``allowed`` ids, or leaving out ``excluded`` ones (a segment's deleted chunks),
    and the selectors they point to (kept alive by the caller: FAISS holds raw pointers). An IVF index takes only
    IVF parameters, and those carry its ``nprobe`` (theirs would default to one list)."""
    if allowed is not None:
        inner = faiss.IDSelectorBatch(allowed)
        selector: faiss.IDSelector = inner
    else:
        assert excluded is not None
        inner = faiss.IDSelectorBatch(excluded)
        selector = faiss.IDSelectorNot(inner)
    concrete = faiss.downcast_index(index)
    if isinstance(concrete, faiss.IndexIVF):
        params: faiss.SearchParameters = faiss.SearchParametersIVF(  # type: ignore[call-arg]
            sel=selector, nprobe=concrete.nprobe)
    else:
        params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
    return params, [inner, selector]


def search(index: faiss.Index, vector: np.ndarray, k: int, allowed: np.ndarray | None = None,
           exact_filter_max: int = 50_000, candidates: faiss.Index | None = None,
           excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` best chunks, optionally only among ``allowed`` ids.

    A filter on an approximate index is answered exactly over the allowed vectors when there are few of them
    (probing a few lists could miss a small allowed set entirely). With ``candidates`` (``fit_candidates``) the
    IVF search runs there and the hits are re-ranked by the main index's codes. ``excluded`` ids (deleted chunks of
    a segment) are never returned.
    """
    query = vector.reshape(1, -1).astype(np.float32)
    if allowed is not None and index_kind(index) == "ivf" and allowed.size <= exact_filter_max:
        vectors = index.reconstruct_batch(allowed)
        scores = vectors @ query[0]
        order = np.argsort(-scores)[:k]
        return scores[order], allowed[order]
    params, _keep = None, None
    if allowed is not None or (excluded is not None and excluded.size):
        params, _keep = _filtered(candidates if candidates is not None else index, allowed, excluded)
    if candidates is not None and candidates.ntotal:
        wanted = min(candidates.ntotal, max(REFINE_MIN_CANDIDATES, REFINE_FACTOR * k))
        _, found = candidates.search(query, wanted, params=params)
        picked = found[0][found[0] >= 0]
        if not picked.size:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        exact = index.reconstruct_batch(picked) @ query[0]
        order = np.argsort(-exact, kind="stable")[:k]
        return exact[order].astype(np.float32), picked[order]
    scores, ids = index.search(query, min(k, index.ntotal), params=params)
    return scores[0], ids[0]
