"""Do ranking variants the service does not ship move the dev collections? A probe, not part of the product.

    python benchmarks/fusion_variants.py scifact-train|newsqa-dev-stories|cranfield [--cache DIR]

Reads a collection already ingested by ``newsroom-qa eval retrieval --data-dir`` (``benchmarks/retrieval.sh``
and ``RETRIEVAL.md`` say where) and re-ranks it in NumPy over every stored vector and BM25 score, so a variant
costs seconds instead of a new ingestion. The first row is the shipped ranking (``index.retrieval.rank_chunks``
with the configured weights, max-passage); it must print the command's own figure, which checks the probe.
Variants: z-score instead of min-max normalisation; a document scored by its best passage plus a share of its
second best; dense pseudo-relevance feedback (Rocchio: the query vector moved toward the mean of the first
ranking's top passages, then ranked again); each chunk's dense score mixed with a window vector (its own plus its
neighbours', re-normalised); BM25 pseudo-relevance feedback (``feedback_terms``); word pairs (adjacent content
words) as a BM25 proximity signal, in an index of their own or beside the words in one. Only dev collections are
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
    from service.evaluation.retrieval import load_beir, load_cranfield, load_squad_retrieval

    if name == "scifact-train":
        return load_beir(data / "beir_scifact", "train"), "scifact"
    if name == "msmarco-dl":
        return load_beir(data / "msmarco_trecdl_subset", "test"), "msmarco"
    if name == "dbpedia-entity":
        return load_beir(data / "dbpedia_entity_subset", "test"), "dbpedia"
    if name == "newsqa-dev-stories":
        return load_squad_retrieval(data / "newsqa" / "newsqa-500.shared.json", "dev", "document"), "newsqa"
    return load_cranfield(data / "cranfield"), "cranfield"


GRID_ALPHA, GRID_DOC, GRID_DENSE_DOC = (0.3, 0.4, 0.5, 0.6, 0.7), (0.0, 0.3, 0.6, 1.0), (0.0, 0.3)


def minmax(x: np.ndarray) -> np.ndarray:
    low, high = x.min(), x.max()
    return np.zeros_like(x) if high - low < 1e-9 else (x - low) / (high - low)


def zscore(x: np.ndarray) -> np.ndarray:
    spread = x.std()
    return np.zeros_like(x) if spread < 1e-9 else (x - x.mean()) / spread


def word_pairs(text: str) -> list[str]:
    """Adjacent content words (stopwords dropped, stemmed) as one token each: a proximity signal for BM25."""
    from index.tokens import tokenize

    tokens = tokenize(text)
    return [f"{a}_{b}" for a, b in itertools.pairwise(tokens)]


def mix_with_article(chunk: np.ndarray, doc: np.ndarray, doc_w: float) -> np.ndarray:
    """Chunk and article BM25 each scaled to max 1 and mixed by ``doc_w``, as ``LexicalIndex.scores`` mixes them."""
    return np.asarray((1 - doc_w) * chunk / max(float(chunk.max()), 1e-9)
                      + doc_w * doc / max(float(doc.max()), 1e-9), dtype=np.float32)


def word_pair_scores(snap: Any, spans: dict[int, tuple[str, int, int]], rowids: np.ndarray, doc_of: np.ndarray,
                  article: np.ndarray, queries: list[str], settings: Any
                  ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]]]:
    """Word-pair signals for each query, two ways: a BM25 index of word pairs alone (chunk and article scores mixed
    like the shipped BM25, max = 1), and one index holding words and word pairs together (the raw chunk and article
    scores of the query's words and of its pairs, kept apart so any pair weight can be mixed in later)."""
    import bm25s

    from index.tokens import tokenize

    ids = sorted(set(doc_of.tolist()))
    texts = {d: snap.document(d).text for d in ids}
    chunk_texts = [texts[spans[int(r)][0]][spans[int(r)][1]:spans[int(r)][2]] for r in rowids]
    first_chunk: dict[int, int] = {}
    for i, a in enumerate(article):
        first_chunk.setdefault(int(a), i)
    doc_texts = [texts[str(doc_of[first_chunk[a]])] for a in range(len(first_chunk))]

    def index(corpus: list[list[str]]) -> bm25s.BM25:
        bm25 = bm25s.BM25(k1=settings.bm25_k1, b=settings.bm25_b, method="lucene")
        bm25.index([c or ["_"] for c in corpus], show_progress=False)
        return bm25

    def score(bm25: bm25s.BM25, words: list[str]) -> np.ndarray:
        known = [w for w in words if w in bm25.vocab_dict]
        return bm25.get_scores(known) if known else np.zeros(bm25.scores["num_docs"], dtype=np.float32)

    pairs_only = [index([word_pairs(t) for t in chunk_texts]), index([word_pairs(t) for t in doc_texts])]
    together = [index([tokenize(t) + word_pairs(t) for t in chunk_texts]),
                index([tokenize(t) + word_pairs(t) for t in doc_texts])]
    doc_w = settings.lexical_doc_weight
    separate: list[np.ndarray] = []
    joint: list[tuple[np.ndarray, ...]] = []
    for q in queries:
        pairs, words = word_pairs(q), tokenize(q)
        separate.append(mix_with_article(score(pairs_only[0], pairs), score(pairs_only[1], pairs)[article], doc_w))
        joint.append((score(together[0], words), score(together[0], pairs),
                      score(together[1], words)[article], score(together[1], pairs)[article]))
    return separate, joint


def mix_joint(parts: tuple[np.ndarray, ...], pair_weight: float, doc_w: float) -> np.ndarray:
    """Chunk and article BM25 of the words-and-pairs index, pairs at ``pair_weight``, mixed like the shipped one."""
    return mix_with_article(parts[0] + pair_weight * parts[1], parts[2] + pair_weight * parts[3], doc_w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", choices=["scifact-train", "newsqa-dev-stories", "cranfield", "msmarco-dl",
                                               "dbpedia-entity"])
    parser.add_argument("--grid", action="store_true",
                        help="score the fusion weights' grid (alpha x article BM25 share x centroid share) instead")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR") or "/tmp") / "newsroom-qa-bench",
                        help="the --data-dir parent that benchmarks/retrieval.sh and eval retrieval used")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="score only the variants whose label contains TEXT (repeatable; the shipped row always)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import ir_measures
    from ir_measures import R, nDCG

    from index.embedding.embedder import Embedder
    from index.local.store import Snapshot
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
    starts = np.array([spans[int(r)][1] for r in rowids])
    leads = np.zeros_like(centroids)  # each article's first chunk: a news story's lead sums it up
    for i in np.lexsort((-starts, article)):  # the smallest start of each article is written last
        leads[article[i]] = vectors[i]
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
    doc_w = settings.lexical_doc_weight
    plain_lex = [lexical.scores(collection.queries[q], doc_weight=doc_w) for q in qids]
    mixed: dict[float, list[np.ndarray]] = {}

    def mixed_lex(share: float) -> list[np.ndarray]:
        if share not in mixed:
            mixed[share] = [lexical.scores(collection.queries[q], doc_weight=share) for q in qids]
        return mixed[share]
    pair_lex: list[Any] = []  # word-pair signals, built on first use (they index the collection twice more)

    def pairs() -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]]]:
        if not pair_lex:
            pair_lex.extend(word_pair_scores(snap, spans, rowids, doc_of, article,
                                             [collection.queries[q] for q in qids], settings))
        return pair_lex[0], pair_lex[1]
    feedback_lex: dict[tuple[int, float], list[np.ndarray]] = {}

    n_articles = int(article.max()) + 1
    article_ids = np.empty(n_articles, dtype=object)
    article_ids[article] = doc_of
    doc_lex: dict[float, list[np.ndarray]] = {}

    def per_article_max(scores: np.ndarray) -> np.ndarray:
        out = np.full(n_articles, -np.inf, dtype=np.float32)
        np.maximum.at(out, article, scores)
        return out

    def doc_fused(qid: str, dense: np.ndarray, lex_doc: np.ndarray, alpha: float,
                  norm: Callable[[np.ndarray], np.ndarray], depth: int) -> list[Any]:
        dense_doc = per_article_max(dense)
        candidates = np.union1d(np.argsort(-dense_doc)[:depth], np.argsort(-lex_doc)[:depth][
            lex_doc[np.argsort(-lex_doc)[:depth]] > 0])
        fused = alpha * norm(dense_doc[candidates]) + (1 - alpha) * norm(lex_doc[candidates])
        return [ir_measures.ScoredDoc(qid, str(article_ids[c]), float(f)) for c, f in zip(candidates, fused,
                                                                                           strict=True)]

    bm25_variants: dict[tuple[str, float, bool], list[np.ndarray]] = {}

    def rebuilt_lex(method: str, delta: float, chunks_too: bool) -> list[np.ndarray]:
        """The shipped BM25 signal with the article index (and the chunk index too, if ``chunks_too``) rebuilt
        with another BM25 variant of bm25s (BM25L and BM25+ lower-bound the term-frequency part for long
        documents, Lv and Zhai 2011)."""

        import bm25s

        from index.tokens import tokenize

        key = (method, delta, chunks_too)
        if key not in bm25_variants:
            first: dict[int, int] = {}
            for i, a in enumerate(lexical.doc_of_chunk):
                first.setdefault(int(a), i)
            ids = [str(doc_of[first[a]]) for a in range(len(first))]

            def index(texts: list[str]) -> bm25s.BM25:
                bm25 = bm25s.BM25(k1=settings.bm25_k1, b=settings.bm25_b, method=method, delta=delta)
                bm25.index([tokenize(t) for t in texts], show_progress=False)
                return bm25

            def scores_of(bm25: bm25s.BM25, query: str) -> np.ndarray:
                words = [t for t in tokenize(query) if t in bm25.vocab_dict]
                return bm25.get_scores(words) if words else np.zeros(bm25.scores["num_docs"], np.float32)

            # The variant's own article (and chunk) scores, mixed as the shipped BM25 mixes them.
            doc_index = index([snap.document(d).text for d in ids])
            chunk_index = None
            if chunks_too:
                texts = {d: snap.document(d).text for d in set(ids)}
                chunk_index = index([texts[spans[int(r)][0]][spans[int(r)][1]:spans[int(r)][2]] for r in rowids])
            bm25_variants[key] = [
                mix_with_article(scores_of(chunk_index, collection.queries[q]) if chunk_index is not None
                                 else lexical.scores(collection.queries[q]),
                                 scores_of(doc_index, collection.queries[q])[lexical.doc_of_chunk], doc_w)
                for q in qids]
        return bm25_variants[key]

    def rank(norm: Callable[[np.ndarray], np.ndarray] = minmax, second: float = 0.0, prf: float = 0.0,
             prf_k: int = 10, window: float = 0.0, lead: float = 0.0, feedback: tuple[int, float] | None = None,
             bigram: float = 0.0, joint: float | None = None, depth: int = 300,
             doc_level: float | None = None, weights: tuple[float, float, float] | None = None,
             bm25: tuple[str, float, bool] | None = None) -> dict[str, float]:
        alpha, doc_w, dense_doc_w = weights or (settings.fusion_alpha, settings.lexical_doc_weight,
                                                settings.dense_doc_weight)
        lexes = plain_lex if doc_w == settings.lexical_doc_weight else mixed_lex(doc_w)
        if bm25 is not None:
            lexes = rebuilt_lex(*bm25)
        if doc_level is not None and doc_level not in doc_lex:
            doc_lex[doc_level] = [per_article_max(lexical.scores(collection.queries[q], doc_weight=doc_level))
                                  for q in qids]
        if feedback is not None and feedback not in feedback_lex:
            feedback_lex[feedback] = [lexical.scores(collection.queries[q], doc_weight=doc_w,
                                                     feedback_terms=feedback[0], feedback_weight=feedback[1])
                                      for q in qids]
        run: list[Any] = []
        for i, qid in enumerate(qids):
            lex = lexes[i] if feedback is None else feedback_lex[feedback][i]
            if joint is not None:
                lex = mix_joint(pairs()[1][i], joint, doc_w)
            if bigram:
                lex = lex / max(float(lex.max()), 1e-9) + bigram * pairs()[0][i]
            lex_top = np.argsort(-lex)[:depth]
            query = query_vectors[i]
            for step in range(2 if prf else 1):
                dense = ((1 - dense_doc_w - window) * (vectors @ query) + dense_doc_w * (centroids @ query)[article]
                         + window * (windows @ query) + lead * (leads @ query)[article])
                if lead:
                    dense = dense / (1 + lead)
                candidates = np.union1d(np.argsort(-dense)[:depth], lex_top[lex[lex_top] > 0])
                fused = alpha * norm(dense[candidates]) + (1 - alpha) * norm(lex[candidates])
                if step == 0 and prf:
                    query = query + prf * vectors[candidates[np.argsort(-fused)[:prf_k]]].mean(axis=0)
                    query = query / np.linalg.norm(query)
            if doc_level is not None:  # each signal ranks documents first (dense: best passage), then fused
                run += doc_fused(qid, dense, doc_lex[doc_level][i], alpha, norm, depth)
                continue
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
        ("BM25 feedback 10 words x 0.4", {"feedback": (10, 0.4)}),
        ("word-pair BM25 x 0.1", {"bigram": 0.1}), ("word-pair BM25 x 0.2", {"bigram": 0.2}),
        ("word-pair BM25 x 0.4", {"bigram": 0.4}),
        ("words + pairs in one BM25, pairs x 0 (no variants)", {"joint": 0.0}),
        ("words + pairs in one BM25, pairs x 0.3", {"joint": 0.3}),
        ("words + pairs in one BM25, pairs x 0.6", {"joint": 0.6}),
        ("words + pairs in one BM25, pairs x 1.0", {"joint": 1.0}),
        ("BM25 lucene, article index rebuilt (checks the rebuild)", {"bm25": ("lucene", 0.5, False)}),
        ("BM25+ (delta 1) for articles", {"bm25": ("bm25+", 1.0, False)}),
        ("BM25L (delta 0.5) for articles", {"bm25": ("bm25l", 0.5, False)}),
        ("BM25+ (delta 1) for articles and chunks", {"bm25": ("bm25+", 1.0, True)}),
        ("BM25L (delta 0.5) for articles and chunks", {"bm25": ("bm25l", 0.5, True)}),
        ("lead chunk's cosine added x 0.15", {"lead": 0.15}), ("lead chunk's cosine added x 0.3", {"lead": 0.3}),
        ("documents fused: best passage (dense) + BM25 of chunk/article 0.6", {"doc_level": 0.6}),
        ("documents fused: best passage (dense) + whole-article BM25", {"doc_level": 1.0})]
    print(f"{collection.name}: {len(collection.documents)} documents, {len(qids)} queries")
    if args.grid:
        print("| alpha | article BM25 share | centroid share | nDCG@10 | R@10 |\n|---|---|---|---|---|")
        for cell in itertools.product(GRID_ALPHA, GRID_DOC, GRID_DENSE_DOC):
            m = rank(weights=cell)
            print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {m['nDCG@10']:.4f} | {m['R@10']:.4f} |", flush=True)
        return
    print("| variant | nDCG@10 | R@10 | R@100 |\n|---|---|---|---|")
    for n, (label, kwargs) in enumerate(variants):
        if n and args.only and not any(text in label for text in args.only):
            continue
        m = rank(**kwargs)
        print(f"| {label} | {m['nDCG@10']:.4f} | {m['R@10']:.4f} | {m['R@100']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
