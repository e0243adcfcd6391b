"""Do ranking variants the service does not ship move the dev collections? A probe, not part of the product.

    python benchmarks/fusion_variants.py scifact-train|newsqa-dev-stories|cranfield [--cache DIR]

Reads a collection already ingested by ``newsroom-qa eval retrieval --data-dir`` (``benchmarks/retrieval.sh``
and ``RETRIEVAL.md`` say where) and re-ranks it in NumPy over every stored vector and BM25 score, so a variant
costs seconds instead of a new ingestion. The first row is the shipped ranking (``index.retrieval.rank_chunks``
with the configured weights, max-passage); it must print the command's own figure, which checks the probe.
Variants: z-score instead of min-max normalisation; a document scored by its best passage plus a share of its
second best; dense pseudo-relevance feedback (Rocchio: the query vector moved toward the mean of the first
ranking's top passages, then ranked again); each chunk's dense score mixed with a window vector (its own plus its
neighbours', re-normalised); BM25 pseudo-relevance feedback (``feedback_terms``). Only dev collections are
offered: tuning on a test split would make its figure meaningless.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(name: str, data: Path) -> tuple[Any, str]:
    from service.eval_retrieval import load_beir, load_cranfield, load_squad_retrieval

    if name == "scifact-train":
        return load_beir(data / "beir_scifact", "train"), "scifact"
    if name == "newsqa-dev-stories":
        return load_squad_retrieval(data / "newsqa" / "newsqa-500.shared.json", "dev", "document"), "newsqa"
    return load_cranfield(data / "cranfield"), "cranfield"


def minmax(x: np.ndarray) -> np.ndarray:
    low, high = x.min(), x.max()
    return np.zeros_like(x) if high - low < 1e-9 else (x - low) / (high - low)


def zscore(x: np.ndarray) -> np.ndarray:
    spread = x.std()
    return np.zeros_like(x) if spread < 1e-9 else (x - x.mean()) / spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", choices=["scifact-train", "newsqa-dev-stories", "cranfield"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR") or "/tmp") / "newsroom-qa-bench",
                        help="the --data-dir parent that benchmarks/retrieval.sh and eval retrieval used")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import ir_measures
    from ir_measures import R, nDCG

    from index.embedding import Embedder
    from index.store import Snapshot
    from service.settings import Settings

    collection, folder = load(args.collection, args.data)
    data_dir = args.cache / folder
    if not (data_dir / "CURRENT").is_file():
        sys.exit(f"{data_dir} holds no ingested collection: run `newsroom-qa eval retrieval ... --data-dir "
                 f"{data_dir}` first")
    settings = Settings()
    snap = Snapshot.open(data_dir / (data_dir / "CURRENT").read_text(encoding="utf-8").strip())
    lexical = snap.lexical
    rowids = lexical.rowids
    vectors = snap.vectors([int(r) for r in rowids])
    spans = snap.chunk_spans()
    doc_of = np.array([spans[int(r)][0] for r in rowids])
    _, article = np.unique(doc_of, return_inverse=True)
    centroids = np.zeros((article.max() + 1, vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, article, vectors)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    order = np.lexsort((np.array([spans[int(r)][1] for r in rowids]), article))
    windows = vectors.copy()
    for a, b in itertools.pairwise(order):
        if article[a] == article[b]:
            windows[a] += vectors[b]
            windows[b] += vectors[a]
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)
    qids = list(collection.queries)
    embedder = Embedder(settings.embedding_model, precision=settings.embedding_precision)
    query_vectors = embedder.embed([collection.queries[q] for q in qids])
    qrels = [ir_measures.Qrel(q, d, g) for q, judged in collection.qrels.items() for d, g in judged.items()]
    alpha, doc_w, dense_doc_w = settings.fusion_alpha, settings.lexical_doc_weight, settings.dense_doc_weight
    plain_lex = [lexical.scores(collection.queries[q], doc_weight=doc_w) for q in qids]
    feedback_lex: dict[tuple[int, float], list[np.ndarray]] = {}

    def rank(norm: Callable[[np.ndarray], np.ndarray] = minmax, second: float = 0.0, prf: float = 0.0,
             prf_k: int = 10, window: float = 0.0, feedback: tuple[int, float] | None = None,
             depth: int = 300) -> dict[str, float]:
        if feedback is not None and feedback not in feedback_lex:
            feedback_lex[feedback] = [lexical.scores(collection.queries[q], doc_weight=doc_w,
                                                     feedback_terms=feedback[0], feedback_weight=feedback[1])
                                      for q in qids]
        run: list[Any] = []
        for i, qid in enumerate(qids):
            lex = plain_lex[i] if feedback is None else feedback_lex[feedback][i]
            lex_top = np.argsort(-lex)[:depth]
            query = query_vectors[i]
            for step in range(2 if prf else 1):
                dense = ((1 - dense_doc_w - window) * (vectors @ query) + dense_doc_w * (centroids @ query)[article]
                         + window * (windows @ query))
                candidates = np.union1d(np.argsort(-dense)[:depth], lex_top[lex[lex_top] > 0])
                fused = alpha * norm(dense[candidates]) + (1 - alpha) * norm(lex[candidates])
                if step == 0 and prf:
                    query = query + prf * vectors[candidates[np.argsort(-fused)[:prf_k]]].mean(axis=0)
                    query = query / np.linalg.norm(query)
            best: dict[str, list[float]] = {}
            for j in np.argsort(-fused):
                passages = best.setdefault(str(doc_of[candidates[j]]), [])
                if len(passages) < 2:
                    passages.append(float(fused[j]))
            run += [ir_measures.ScoredDoc(qid, d, s[0] + second * (s[1] if len(s) > 1 else 0.0))
                    for d, s in best.items()]
        metrics = ir_measures.calc_aggregate([nDCG @ 10, R @ 10, R @ 100], qrels, run)
        return {str(m): round(float(v), 4) for m, v in metrics.items()}

    variants: list[tuple[str, dict[str, Any]]] = [
        ("shipped (max-passage, min-max)", {}), ("z-score normalisation", {"norm": zscore}),
        ("best passage + 0.1 x second", {"second": 0.1}), ("best passage + 0.2 x second", {"second": 0.2}),
        ("dense PRF beta 0.5, top 5", {"prf": 0.5, "prf_k": 5}), ("dense PRF beta 1.0, top 10", {"prf": 1.0}),
        ("window vectors 0.2", {"window": 0.2}), ("window vectors 0.35", {"window": 0.35}),
        ("BM25 feedback 10 words x 0.4", {"feedback": (10, 0.4)})]
    print(f"{collection.name}: {len(collection.documents)} documents, {len(qids)} queries")
    print("| variant | nDCG@10 | R@10 | R@100 |\n|---|---|---|---|")
    for label, kwargs in variants:
        m = rank(**kwargs)
        print(f"| {label} | {m['nDCG@10']:.4f} | {m['R@10']:.4f} | {m['R@100']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
