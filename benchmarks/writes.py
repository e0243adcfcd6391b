"""Write cost of one article on the data-directory backend: today's store against the segmented store (issue 28).

    python benchmarks/writes.py                      # 10k, 100k, 1M chunks + churn at 100k -> results/writes.md
    python benchmarks/writes.py --sizes 2000,5000 --adds 3 --deletes 3 --churn-size 5000 --churn-adds 30  # quick

Why: today's store (commit 394efd3) copies the live generation at every write and rebuilds FAISS, BM25 and the
article centroids over the whole archive, so adding one article costs as much as the archive is large (about 9
minutes at 1M chunks). The segmented store in the working tree writes a small segment and merges later. Both are
measured here, on this machine in the same run, on the same archives:

- add one article, embedding included: the real pipeline, ``QAService.from_settings(Settings(data_dir=...))`` on
  the archive, then ``service.indexer.add([article])`` (clean, sentences, chunks, embed, store) with fresh real news
  not in the archive; the share spent inside ``store.write`` is reported beside it;
- delete one article: ``store.write(deletes=[doc_id])`` of a stored article;
- churn (segmented store only, at ``--churn-size``): after ``--churn-adds`` single-article writes (synthetic
  articles and vectors, ``store.write(upserts=[one])`` each): hybrid search p50 with the ranking ``/v1/search`` runs
  (``QAService.retrieve_passages``, in process, query vectors embedded once beforehand), dense recall@10 of
  ``snapshot.dense_search`` against exact search over every live vector, and the number of segments; the same after
  ``store.optimize()``; and search p50 on the same content built in one write (fully merged).

Archives are perf.py's corpus, written in one ``Store.write`` like its ``build_data_dir``: the first
``--real-chunks`` chunks real articles (analysed and embedded, cached in ``benchmarks/.cache``), larger sizes filled
with synthetic articles (real sentences, synthetic vectors). Each (code, size) runs in a process of its own whose
import path starts with that code's tree: a git worktree of 394efd3 for today's code, the working tree for the new
one (``--child``). Today's store at 1M chunks costs ~9 minutes a write, so it takes at most
``--baseline-max-writes`` adds and deletes there (n is reported); ``--no-baseline-at 1000000`` skips it. On 2
cores the default run takes roughly 2 hours, most of it today's store: ~40 writes of ~40 s at 100k, 6 of ~9 minutes
at 1M (``--baseline-cap-from 100000`` caps 100k too; ``--baseline-max-writes 2`` saves another 18 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import inspect
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "394efd3"
CODES = ("today", "segmented")  # today: commit BASELINE; segmented: the working tree
# What add-one runs besides the store: these should be the same code in both trees (the report says if not).
PIPELINE_FILES = (("index/embedding/embedder.py", "index/embedding.py"),
                  ("index/embedding/batch_encoder.py", "index/batch_encoder.py"),
                  ("index/embedding/query_encoder.py", "index/query_encoder.py"),
                  ("index/pipeline/indexer.py", "index/indexer.py"),
                  ("index/pipeline/chunking.py", "index/chunking.py"),
                  ("index/pipeline/cleaning.py", "index/cleaning.py"),
                  ("index/pipeline/sentences.py", "index/sentences.py"), ("index/models.py", "index/models.py"))
# The same modules under this tree's layout and under the baseline's (issue 30 moved them into subpackages).
STORE = ("index.local.store", "index.store")
QA = ("service.answering.qa", "service.qa")


def load(names: tuple[str, ...]) -> Any:
    """The first of ``names`` that imports: one module under either tree's layout."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"none of {names} imports")


def _code_lines(text: str) -> list[str]:
    """A module's lines without its imports and docstring references to paths (what a move rewrites)."""
    return [line for line in text.splitlines() if not re.match(r"\s*(from|import) (index|service)\b", line)
            and "index/" not in line and "index." not in line and "service." not in line]


# --- which code ----------------------------------------------------------------------------------------------
def bind_code(src: Path) -> None:
    """Import ``index`` and ``service`` from ``src`` before anything else does, then make perf.py importable.

    Once the packages are imported their submodules load from ``src`` whatever ``sys.path`` says later (perf.py puts
    the working tree first when it is imported), so ``import index.local.store`` is that tree's store.
    """
    sys.path.insert(0, str(src))
    for name in ("index", "service"):
        module = importlib.import_module(name)
        where = Path(str(module.__file__)).resolve()
        if not where.is_relative_to(src.resolve()):
            raise SystemExit(f"{name} was imported from {where}, not from {src}")
    # perf.py's helpers from the same tree (its imports follow that tree's layout), sharing this tree's cache.
    sys.path.insert(0, str(src / "benchmarks" if (src / "benchmarks" / "perf.py").is_file() else ROOT / "benchmarks"))
    import perf

    perf.CACHE = ROOT / "benchmarks" / ".cache"


def ensure_worktree(path: Path, commit: str) -> Path:
    """A detached git worktree of ``commit`` at ``path`` (reused when it is already there)."""
    if (path / "index" / "store.py").is_file():
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        want = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True,
                              check=True).stdout.strip()
        if head != want:
            raise SystemExit(f"{path} holds commit {head[:7]}, not {commit}; remove it or pass another --work")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def git(*argv: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False).stdout.strip()


def cpu_model() -> str:
    """lscpu's model name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "?"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


# --- child: helpers ------------------------------------------------------------------------------------------
def settings_for(data_dir: Path, work: Path) -> Any:
    """The service's settings on ``data_dir``: defaults, but the heuristic reader (no reader model to load: writes
    never read) and the run's cache directory (as perf.py)."""
    from service.settings import Settings

    return Settings(data_dir=data_dir, cache_dir=work / "cache", reader="heuristic")


def open_service(data_dir: Path, work: Path, merges: str | None) -> Any:
    """``QAService.from_settings`` on an existing data dir; with ``merges`` (segmented store only) its store is
    opened again with that merge policy, with the service's other store settings."""
    Store = load(STORE).Store
    QAService = load(QA).QAService

    service = QAService.from_settings(settings_for(data_dir, work), seed_if_empty=False)
    if merges and "merges" in inspect.signature(Store).parameters:
        old: Any = service.store
        policy: dict[str, Any] = {"merges": merges}  # today's Store has no such parameter
        store = Store(data_dir, old.model_id, old.dimension, bm25_k1=old.bm25_k1, bm25_b=old.bm25_b,
                      ann_settings=old.ann, **policy)
        service.store = service.indexer.store = store
    return service


def merge_policy(store: Any) -> str:
    """The merge policy a store runs with ("n/a" for today's store)."""
    Store = load(STORE).Store

    for name in ("merges", "_merges"):
        if isinstance(getattr(store, name, None), str):
            return str(getattr(store, name))
    parameter = inspect.signature(Store).parameters.get("merges")
    return f"{parameter.default} (default)" if parameter is not None else "n/a"


def store_stats(store: Any) -> dict[str, Any] | None:
    """``store.stats()`` (segments, merges, merge seconds) where the store has it."""
    if not hasattr(store, "stats"):
        return None
    stats = store.stats()
    out: dict[str, Any] = {}
    for key in ("segments", "merges", "merge_seconds"):
        value = getattr(stats, key, None)
        if isinstance(value, int | np.integer):
            out[key] = int(value)
        elif isinstance(value, float | np.floating):
            out[key] = float(value)
    return out


def wait_for_merges(store: Any) -> float | None:
    """Seconds spent waiting for background merges (None where the store has none)."""
    if not hasattr(store, "wait_for_merges"):
        return None
    started = time.perf_counter()
    store.wait_for_merges()
    return time.perf_counter() - started


def time_store_writes(store: Any) -> list[float]:
    """Record the seconds of every ``store.write`` from now on (the pipeline calls it through the same object)."""
    seconds: list[float] = []
    write: Callable[..., Any] = store.write

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return write(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    with contextlib.suppress(AttributeError):  # a store that forbids it: no breakdown
        store.write = timed
    return seconds


def summary(values: list[float]) -> dict[str, Any]:
    from perf import pct

    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "seconds": values}


@dataclass
class Corpus:
    """An archive's articles and vectors (perf.py's corpus), and what else a child needs from the same run."""

    analysed: Any  # perf.Analysed
    vectors: np.ndarray
    n_real: int
    fresh: list[Any]  # real articles beyond those the corpus used: never in an archive
    real: Any
    real_vectors: np.ndarray
    model_id: str


def corpus(job: dict[str, Any], size: int) -> Corpus:
    """perf.py's corpus of ``size`` chunks: real articles first, then synthetic ones."""
    from perf import load_articles, real_corpus, synthetic, take

    from service.answering.qa import QAService

    data, work = Path(job["data"]), Path(job["work"])
    articles = load_articles(data)
    helper = QAService.from_settings(settings_for(work / f"unused-{job['code']}", work), seed_if_empty=False)
    real, real_vectors = real_corpus(helper, articles, job["real_chunks"])
    model_id = str(helper.store.model_id)
    del helper
    gc.collect()
    analysed, vectors = take(real, real_vectors, size)
    n_real = len(vectors)
    if n_real < size:
        extra, extra_vectors = synthetic(real, real_vectors, size - n_real)
        analysed, vectors = analysed + extra, np.concatenate([vectors, extra_vectors])
    # real_corpus analyses the articles in order, one item each, so the rest were never analysed
    return Corpus(analysed, vectors, n_real, articles[len(real):], real, real_vectors, model_id)


def build(path: Path, analysed: Any, vectors: np.ndarray, model_id: str) -> float:
    """perf.py's ``build_data_dir`` in a fresh directory: the archive in one ``Store.write``; its seconds."""
    from perf import build_data_dir

    shutil.rmtree(path, ignore_errors=True)
    return float(build_data_dir(path, analysed, vectors, model_id))


# --- child: write cost ---------------------------------------------------------------------------------------
def writes_child(job: dict[str, Any]) -> dict[str, Any]:
    """One (code, size): build the archive, then time single-article adds (embedding included) and deletes."""
    from tqdm import tqdm

    from index.errors import InvalidInput

    store_module = load(STORE)

    code, size, work = job["code"], int(job["size"]), Path(job["work"])
    tag = f"[{code} {size:,}]"
    c = corpus(job, size)
    analysed, vectors, n_real, fresh = c.analysed, c.vectors, c.n_real, c.fresh
    c_model = c.model_id
    del c
    data_dir = work / f"{code}-{size}"
    print(f"{tag} store {store_module.__file__}; building {len(vectors):,} chunks ({n_real:,} real, "
          f"{len(analysed):,} articles) in one write", flush=True)
    row: dict[str, Any] = {"code": code, "store_module": store_module.__file__, "size": size,
                           "chunks": len(vectors), "real_chunks": n_real, "documents": len(analysed),
                           "build_s": build(data_dir, analysed, vectors, c_model)}
    print(f"{tag} built in {row['build_s']:.1f} s", flush=True)
    if size <= job.get("bulk_max", 0):
        # Bulk ingestion as `index add` writes it: one atomic write per 256 articles (vectors already computed, so
        # this is the store's share). Today's store copies the archive at every batch; the segmented one merges.
        DocumentWrite, Store = store_module.DocumentWrite, store_module.Store
        bulk_dir = work / f"{code}-{size}-bulk"
        shutil.rmtree(bulk_dir, ignore_errors=True)
        bulk = Store(bulk_dir, c_model, vectors.shape[1])
        started, offset = time.perf_counter(), 0
        for first in tqdm(range(0, len(analysed), 256), desc=f"{tag} bulk, 256 articles a write", unit="write"):
            writes = []
            for doc, sentences, chunks in analysed[first:first + 256]:
                writes.append(DocumentWrite(document=doc, sentences=sentences, chunks=chunks,
                                            vectors=vectors[offset:offset + len(chunks)]))
                offset += len(chunks)
            bulk.write(upserts=writes)
        wait_for_merges(bulk)
        row["bulk_256_s"] = time.perf_counter() - started
        print(f"{tag} bulk ingestion in batches of 256 articles: {row['bulk_256_s']:.1f} s", flush=True)
        shutil.rmtree(bulk_dir, ignore_errors=True)
    order = np.random.default_rng(job["seed"]).permutation(len(analysed))  # the same articles for both codes
    stored_ids = [analysed[i][0].id for i in order[:job["deletes"]]]
    del analysed, vectors
    gc.collect()

    service = open_service(data_dir, work, job.get("merges"))
    store = service.store
    row["merge_policy"] = merge_policy(store)
    cap = job["max_writes"]
    n_adds, n_deletes = min(job["adds"], cap or job["adds"]), min(job["deletes"], cap or job["deletes"])
    # Warm-up, untimed and not stored: each article to add is analysed and embedded once. The model compiles
    # kernels for every batch shape it meets (the first article of a shape took up to ~2 s more), which a running
    # service has long met; the timed adds then pay the steady cost. Articles with no text left after cleaning are
    # passed over (the same ones for both codes).
    to_add: list[Any] = []
    for doc in fresh:
        if len(to_add) == n_adds:
            break
        with contextlib.suppress(InvalidInput):
            service.indexer.prepare([doc])
            to_add.append(doc)
    store_seconds = time_store_writes(store)
    adds: list[float] = []
    add_store: list[float] = []
    chunks: list[int] = []
    with tqdm(to_add, desc=f"{tag} add one", unit="write") as bar:
        for doc in bar:
            before = len(store_seconds)
            started = time.perf_counter()
            added = service.indexer.add([doc])
            adds.append(time.perf_counter() - started)
            add_store.extend(store_seconds[before:])
            chunks.append(added[0].chunks)
            bar.set_postfix(last=f"{adds[-1]:.3g}s")
    row["add"] = summary(adds)
    row["add_store"] = summary(add_store)
    row["add_chunks_mean"] = float(np.mean(chunks)) if chunks else 0.0
    row["stats_after_adds"] = store_stats(store)
    print(f"{tag} add one: p50 {row['add']['p50']:.3g} s, p95 {row['add']['p95']:.3g} s (n={n_adds}; store.write "
          f"p50 {row['add_store']['p50']:.3g} s); stats {row['stats_after_adds']}", flush=True)
    deletes: list[float] = []
    with tqdm(stored_ids[:n_deletes], desc=f"{tag} delete one", unit="write") as bar:
        for doc_id in bar:
            started = time.perf_counter()
            store.write(deletes=[doc_id])
            deletes.append(time.perf_counter() - started)
            bar.set_postfix(last=f"{deletes[-1]:.3g}s")
    row["delete"] = summary(deletes)
    row["merge_wait_s"] = wait_for_merges(store)
    row["stats_after_deletes"] = store_stats(store)
    row["n_chunks_after"] = int(store.snapshot().manifest.n_chunks)
    print(f"{tag} delete one: p50 {row['delete']['p50']:.3g} s, p95 {row['delete']['p95']:.3g} s "
          f"(n={n_deletes}); stats {row['stats_after_deletes']}", flush=True)
    if not job.get("keep"):
        shutil.rmtree(data_dir, ignore_errors=True)
    return row


# --- child: churn --------------------------------------------------------------------------------------------
def churn_articles(real: Any, real_vectors: np.ndarray, n: int, seed: int) -> tuple[Any, np.ndarray]:
    """``n`` synthetic articles (perf.py's ``synthetic``) with ids of their own (``churn-N``), and their vectors."""
    from perf import synthetic

    from index.pipeline.chunking import chunk_document

    want = 4 * n
    while True:
        made, made_vectors = synthetic(real, real_vectors, want, seed=seed)
        if len(made) >= n:
            break
        want *= 2
    out = []
    for i, (doc, sentences, _) in enumerate(made[:n]):
        new_id = f"churn-{i}"
        chunks = chunk_document(new_id, doc.text, sentences)
        out.append((doc.model_copy(update={"id": new_id, "n_chunks": len(chunks)}), sentences, chunks))
    return out, made_vectors[:sum(len(c) for _, _, c in out)]


class Probe:
    """Search latency and dense recall of stores, on fixed questions and their vectors."""

    def __init__(self, service: Any, queries: list[str], query_vectors: np.ndarray, live_ids: list[str],
                 live_vectors: np.ndarray, rounds: int, top_k: int = 10) -> None:
        from index.local import ann

        self.service, self.queries, self.query_vectors = service, queries, query_vectors
        self.rounds, self.top_k = rounds, top_k
        self.position = {chunk_id: i for i, chunk_id in enumerate(live_ids)}
        self.live_vectors = live_vectors
        self.exact_scores = ann.exact_top(live_vectors, query_vectors, top_k)[0]

    def _search_ms(self, store: Any, query: str, vector: np.ndarray) -> float:
        """One search as ``QAService.search`` runs it, the query's embedding aside."""
        started = time.perf_counter()
        self.service.retrieve_passages(store.snapshot(), query, vector, self.top_k)
        return (time.perf_counter() - started) * 1000

    def measure(self, stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Hybrid search p50/p95 of each store over ``rounds`` passes that take the stores in turn (after one
        warm-up pass each), so that the states compared see the same machine; then each store's dense recall."""
        from perf import pct
        from tqdm import tqdm

        pairs = list(zip(self.queries, self.query_vectors, strict=True))
        times: dict[str, list[float]] = {label: [] for label in stores}
        for store in stores.values():  # warm-up: the first reads of each segment's files
            for query, vector in pairs:
                self._search_ms(store, query, vector)
        with tqdm(total=self.rounds * len(stores) * len(pairs), desc=f"[churn] search: {', '.join(stores)}",
                  unit="query", leave=False) as bar:
            for _ in range(self.rounds):
                for label, store in stores.items():
                    for query, vector in pairs:
                        times[label].append(self._search_ms(store, query, vector))
                        bar.update()
        out = {}
        for label, store in stores.items():
            out[label] = {"search_p50_ms": pct(times[label], 50), "search_p95_ms": pct(times[label], 95),
                          "search_rounds": self.rounds, **self.dense(store)}
            m = out[label]
            print(f"[churn] {label}: search p50 {m['search_p50_ms']:.1f} ms, p95 {m['search_p95_ms']:.1f} ms; dense "
                  f"recall@10 {m['recall_at_10']:.4f}; dense_search p50 {m['dense_p50_ms']:.2f} ms; stats "
                  f"{m['stats']}", flush=True)
        return out

    def dense(self, store: Any) -> dict[str, Any]:
        """recall@10 of ``dense_search`` against exact search over every live vector (tie-aware: a hit counts when
        its true score reaches the exact 10th), its p50 ms, and the store's segments."""
        from perf import pct

        from index.local import ann

        snap = store.snapshot()
        hits, unresolved, dense_ms = 0.0, 0, []
        for vector, exact in zip(self.query_vectors, self.exact_scores, strict=True):
            started = time.perf_counter()
            found = snap.dense_search(vector, self.top_k)
            dense_ms.append((time.perf_counter() - started) * 1000)
            chunk_of = {rowid: p.chunk_id for rowid, p in snap.passages(found)}
            ids = np.full((1, self.top_k), -1, dtype=np.int64)
            scores = np.full((1, self.top_k), -np.inf, dtype=np.float32)
            for j, (rowid, _) in enumerate(found[:self.top_k]):
                at = self.position.get(chunk_of.get(rowid, ""))
                if at is None:
                    unresolved += 1
                    continue
                ids[0, j], scores[0, j] = rowid, float(self.live_vectors[at] @ vector)
            hits += ann.recall_at_k(ids, exact[None, :], scores) * self.top_k
        return {"recall_at_10": hits / (self.top_k * len(self.query_vectors)), "dense_p50_ms": pct(dense_ms, 50),
                "unresolved_hits": unresolved, "n_chunks": int(snap.manifest.n_chunks), "stats": store_stats(store)}


def churn_child(job: dict[str, Any]) -> dict[str, Any]:
    """Churn at one size: many single-article writes, then search and recall before and after ``optimize()``, each
    beside the same content built in one write."""
    from perf import questions
    from tqdm import tqdm

    store_module = load(STORE)
    DocumentWrite, Store = store_module.DocumentWrite, store_module.Store

    size, work = int(job["size"]), Path(job["work"])
    c = corpus(job, size)
    analysed, vectors, n_real, model_id = c.analysed, c.vectors, c.n_real, c.model_id
    extra, extra_vectors = churn_articles(c.real, c.real_vectors, job["churn_adds"], seed=job["seed"] + 1)
    del c
    data_dir = work / f"churn-{size}"
    print(f"[churn] store {store_module.__file__}; building {len(vectors):,} chunks ({n_real:,} real) in one "
          "write", flush=True)
    out: dict[str, Any] = {"code": job["code"], "store_module": store_module.__file__, "size": size,
                           "chunks": len(vectors), "real_chunks": n_real,
                           "build_s": build(data_dir, analysed, vectors, model_id)}
    service = open_service(data_dir, work, job.get("merges"))
    store = service.store
    out["merge_policy"] = merge_policy(store)
    qs = questions(Path(job["data"]), job["queries"])
    query_vectors = np.stack([service.embedder.embed_query(q) for q in qs])  # once, before any timing
    live_ids = [c.chunk_id for _, _, chunks in analysed + extra for c in chunks]
    probe = Probe(service, qs, query_vectors, live_ids, np.concatenate([vectors, extra_vectors]), job["rounds"])

    seconds: list[float] = []
    offset = 0
    with tqdm(extra, desc=f"[churn] {len(extra):,} single-article writes", unit="write") as bar:
        for doc, sentences, chunks in bar:
            one = DocumentWrite(document=doc, sentences=sentences, chunks=chunks,
                                vectors=extra_vectors[offset:offset + len(chunks)])
            offset += len(chunks)
            started = time.perf_counter()
            store.write(upserts=[one])
            seconds.append(time.perf_counter() - started)
            bar.set_postfix(last=f"{seconds[-1]:.3g}s")
    out["churn_writes"] = {k: v for k, v in summary(seconds).items() if k != "seconds"}
    out["churn_writes"]["total_s"] = float(sum(seconds))
    out["churn_chunks"] = len(extra_vectors)
    out["merge_wait_s"] = wait_for_merges(store)
    print(f"[churn] {len(seconds):,} writes: p50 {out['churn_writes']['p50']:.3g} s, p95 "
          f"{out['churn_writes']['p95']:.3g} s, total {out['churn_writes']['total_s']:.1f} s; waited "
          f"{out['merge_wait_s']} s for merges", flush=True)
    one_write = work / f"churn-{size}-one-write"
    out["one_write_build_s"] = build(one_write, analysed + extra, probe.live_vectors, model_id)
    merged = Store(one_write, store.model_id, store.dimension)
    first = probe.measure({"unmerged": store, "one_write": merged})
    out["unmerged"], out["one_write"] = first["unmerged"], first["one_write"]
    if hasattr(store, "optimize"):
        started = time.perf_counter()
        store.optimize()
        out["optimize_s"] = time.perf_counter() - started
        print(f"[churn] optimize() took {out['optimize_s']:.1f} s", flush=True)
        second = probe.measure({"optimized": store, "one_write": merged})
        out["optimized"], out["one_write_beside_optimized"] = second["optimized"], second["one_write"]
    else:
        out["optimized"] = None
    if not job.get("keep"):
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(one_write, ignore_errors=True)
    return out


def run_child(job_file: Path) -> None:
    """``--child``: one measurement in this process, on the code tree the job names; the row goes to job["out"]."""
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    job = json.loads(job_file.read_text(encoding="utf-8"))
    out = Path(job["out"])
    try:
        bind_code(Path(job["src"]))
        row = churn_child(job) if job["kind"] == "churn" else writes_child(job)
    except BaseException as exc:
        out.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc()}), encoding="utf-8")
        raise
    out.write_text(json.dumps({"result": row}, default=float), encoding="utf-8")


# --- parent --------------------------------------------------------------------------------------------------
def launch(job: dict[str, Any], src: Path, work: Path) -> dict[str, Any]:
    """Run one job in a child process whose imports come from ``src``; its row, or {"failed": why}."""
    name = f"job-{job['kind']}-{job['code']}-{job['size']}"
    job_file, out_file = work / f"{name}.json", work / f"{name}.out.json"
    out_file.unlink(missing_ok=True)
    job_file.write_text(json.dumps({**job, "src": str(src), "out": str(out_file)}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p),
           "TOKENIZERS_PARALLELISM": "false"}
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    # cwd: the work dir, the same for both codes (no .env of either tree is read by Settings)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(job_file)], env=env,
                          cwd=work, check=False)
    answer = json.loads(out_file.read_text(encoding="utf-8")) if out_file.is_file() else {}
    if done.returncode == 0 and "result" in answer:
        row: dict[str, Any] = answer["result"]
        row["wall_s"] = time.perf_counter() - started
        row["load_average"] = [load_before, os.getloadavg()[0]]  # 1-minute, before and after: was the machine quiet?
        return row
    why = answer.get("error") or ("killed: out of memory" if done.returncode == -9
                                  else f"exit status {done.returncode}")
    print(f"{name} failed: {why}", flush=True)
    return {"failed": why, "traceback": answer.get("traceback")}


def _s(x: float) -> str:
    """Seconds, three significant figures (no exponents)."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}" if x >= 0.001 else f"{x:.6f}".rstrip("0").rstrip(".")


def _cell(row: dict[str, Any] | None, key: str) -> str:
    if not row:
        return "not run"
    if "not_run" in row:
        return f"not run ({row['not_run']})"
    if "failed" in row:
        return "failed (see writes.json)"
    m = row[key]
    return f"{_s(m['p50'])} / {_s(m['p95'])} s (n={m['n']})"


def _ratio(today: dict[str, Any] | None, new: dict[str, Any] | None, key: str) -> str:
    if not today or not new or key not in today or key not in new or not new[key]["p50"]:
        return ""
    return f"{today[key]['p50'] / new[key]['p50']:.1f}x"


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "writes.json").write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    lines = [f"Machine: {results['machine']}; lscpu model name: {results['cpu_model']}; {results['date']}.", "",
             "# Single-article writes: today's store against the segmented store", "",
             f"One run of `{results['command']}`. *today* = commit {BASELINE} (every write copies the live "
             f"generation and rebuilds FAISS, BM25 and centroids); *segmented* = the working tree ("
             f"{results['working_tree']}). Both measured in this run, each in a process of its own, on the same "
             "archives (same articles, same vectors), each built in one `Store.write`.", "",
             "*Add one*: the real pipeline, embedding included: `QAService.from_settings(Settings(data_dir=...))` "
             "on the archive, then `service.indexer.add([article])` (clean, sentences, chunk, embed, store) with a "
             "fresh real news article not in the archive (BBC, Reuters, AG News). Before the timed adds each of "
             "these articles was analysed and embedded once, untimed and not stored: the model compiles kernels "
             "for each batch shape it meets (up to ~2 s more for the first article of a shape), which a running "
             "service has long met. *Delete one*: `store.write(deletes=[doc_id])` of a stored "
             "article. Seconds, p50 / p95 (n samples).", "",
             "| archive (chunks) | add one: today p50 / p95 | add one: segmented p50 / p95 | delete one: today | "
             "delete one: segmented | ratio (today/segmented p50) |",
             "|---|---|---|---|---|---|"]
    notes = []
    for entry in results["sizes"]:
        today, new = entry.get("today"), entry.get("segmented")
        known = next((r for r in (today, new) if r and "chunks" in r), None)
        chunks = f"{known['chunks']:,} ({known['real_chunks']:,} real)" if known else f"{entry['size']:,}"
        ratios = ", ".join(f"{what} {r}" for what, r in (("add", _ratio(today, new, "add")),
                                                          ("delete", _ratio(today, new, "delete"))) if r)
        lines.append(f"| {chunks} | {_cell(today, 'add')} | {_cell(new, 'add')} | {_cell(today, 'delete')} | "
                     f"{_cell(new, 'delete')} | {ratios} |")
        parts = []
        for code in CODES:
            row = entry.get(code)
            if not row or "add" not in row:
                continue
            bulk = f" (in writes of 256 articles: {_s(row['bulk_256_s'])} s)" if "bulk_256_s" in row else ""
            text = (f"{code}: built in one write in {_s(row['build_s'])} s{bulk}; `store.write` within add one p50 "
                    f"{_s(row['add_store']['p50'])} s (added articles: {row['add_chunks_mean']:.1f} chunks on "
                    "average)")
            if row.get("stats_after_deletes"):
                stats = row["stats_after_deletes"]
                text += (f"; merge policy {row['merge_policy']}, after the writes {stats.get('segments')} segments, "
                         f"{stats.get('merges')} merges ({_s(stats.get('merge_seconds', 0.0))} s)")
            if row.get("merge_wait_s") is not None and "background" in row["merge_policy"]:
                text += f"; waited {_s(row['merge_wait_s'])} s for background merges at the end"
            parts.append(text)
        if parts:
            notes.append(f"- {entry['size']:,}: " + "; ".join(parts) + ".")
    if notes:
        lines += ["", *notes]
    if results.get("pipeline_differs"):
        lines += ["", f"Caveat: files add one runs besides the store differ from {BASELINE} in the working tree "
                  f"(add one may not run identical pipeline code in both): {', '.join(results['pipeline_differs'])}."]
    churn = results.get("churn")
    if churn and "failed" not in churn:
        c, w = churn, churn["churn_writes"]
        merges = c["unmerged"].get("stats") or {}
        lines += ["", f"## Churn at {c['chunks']:,} chunks ({c['code']} store)", "",
                  f"{w['n']:,} single-article writes (`store.write(upserts=[one])`; synthetic articles of real "
                  f"sentences, {c['churn_chunks']:,} chunks, synthetic vectors: no embedding): p50 {_s(w['p50'])} s, "
                  f"p95 {_s(w['p95'])} s, {_s(w['total_s'])} s in all; merge policy {c['merge_policy']}"
                  + (f", {merges['merges']} merges in {_s(merges.get('merge_seconds', 0.0))} s"
                     if "merges" in merges else "")
                  + (f"; then {_s(c['merge_wait_s'])} s waiting for background merges" if c.get('merge_wait_s')
                     is not None and "background" in c["merge_policy"] else "") + ".",
                  f"Search: the ranking `/v1/search` runs (`QAService.retrieve_passages`, top 10 hybrid, a snapshot "
                  f"taken per query), in process, over {results['args']['queries']} NewsQA questions whose vectors "
                  "were embedded once beforehand (`embed_query`). Each state is measured beside the same content "
                  f"built in one write (fully merged): {results['args']['search_rounds']} rounds in which the two "
                  "stores take turns, after one warm-up pass each, so both see the same machine; p50 / p95 over "
                  "the rounds. Recall: `snapshot.dense_search` top 10 against exact search over every live vector "
                  "(kept in memory), tie-aware.", "",
                  "| state | segments | search p50 / p95 ms | built in one write, beside it: p50 / p95 ms | "
                  "ratio (p50) | dense recall@10 | dense_search p50 ms |", "|---|---|---|---|---|---|---|"]
        states = [(f"after {w['n']:,} adds (unmerged)", c["unmerged"], c["one_write"]),
                  (f"after `optimize()` ({_s(c['optimize_s'])} s)" if c.get("optimized") else
                   "after `optimize()`", c.get("optimized"), c.get("one_write_beside_optimized"))]
        for label, m, merged in states:
            if not m or not merged:
                lines.append(f"| {label} | not run (the store has no `optimize()`) | | | | | |")
                continue
            segments = (m.get("stats") or {}).get("segments", "n/a")
            lines.append(f"| {label} | {segments} | {m['search_p50_ms']:.1f} / {m['search_p95_ms']:.1f} | "
                         f"{merged['search_p50_ms']:.1f} / {merged['search_p95_ms']:.1f} | "
                         f"{m['search_p50_ms'] / merged['search_p50_ms']:.2f}x | {m['recall_at_10']:.4f} | "
                         f"{m['dense_p50_ms']:.2f} |")
        one = c["one_write"]
        lines += ["", f"Built in one write ({_s(c['one_write_build_s'])} s): "
                  f"{(one.get('stats') or {}).get('segments', 'n/a')} segment(s), dense recall@10 "
                  f"{one['recall_at_10']:.4f}, dense_search p50 {one['dense_p50_ms']:.2f} ms. Unmerged / merged "
                  f"search p50: {c['unmerged']['search_p50_ms'] / one['search_p50_ms']:.2f}x."]
    elif churn:
        lines += ["", f"## Churn at {results['args']['churn_size']:,} chunks", "", "Failed (see writes.json)."]
    loads = [x for r in [*(e.get(c) for e in results["sizes"] for c in CODES), churn] if r
             for x in r.get("load_average", [])]
    if loads:
        lines += ["", f"1-minute load average before and after each measurement: {min(loads):.2f}-{max(loads):.2f} "
                  f"on {os.cpu_count()} cores (above ~1, other work shared the machine and the figures are noisier)."]
    lines += ["", "Corpus as in perf.py: the first chunks real articles (analysed and embedded), larger sizes filled "
              "with synthetic articles of real sentences and synthetic vectors. Raw figures: `writes.json`.", ""]
    (out / "writes.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="archive sizes in chunks, comma-separated")
    parser.add_argument("--adds", type=int, default=20, help="single-article adds timed per size and code")
    parser.add_argument("--deletes", type=int, default=20, help="single-article deletes timed per size and code")
    parser.add_argument("--baseline-max-writes", type=int, default=3,
                        help="today's code: at most this many adds and this many deletes at sizes >= "
                             "--baseline-cap-from (~9 minutes a write at 1M chunks)")
    parser.add_argument("--baseline-cap-from", type=int, default=1_000_000)
    parser.add_argument("--no-baseline-at", default="", help="sizes (comma-separated) where today's code is not run")
    parser.add_argument("--churn-size", type=int, default=100_000, help="archive size of the churn test (0 = off)")
    parser.add_argument("--churn-adds", type=int, default=1000, help="single-article writes of the churn test")
    parser.add_argument("--churn-code", choices=CODES, default="segmented",
                        help="the code the churn test runs (today: only to try the script on small sizes)")
    parser.add_argument("--queries", type=int, default=100, help="NewsQA questions of the churn search")
    parser.add_argument("--search-rounds", type=int, default=3,
                        help="churn search: rounds in which the state measured and the one-write archive take turns")
    parser.add_argument("--real-chunks", type=int, default=10_000, help="real (embedded) chunks in the corpus")
    parser.add_argument("--merges", choices=("inline", "background", "off"), default=None,
                        help="segmented store's merge policy (default: the store's own default)")
    parser.add_argument("--bulk-max", type=int, default=10_000,
                        help="sizes up to this also time bulk ingestion in writes of 256 articles (store only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where to build data dirs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where writes.md and writes.json go")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and the baseline worktree in --work")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return run_child(args.child)
    if not (args.data / "bbc_news").is_dir() or not (args.data / "newsqa").is_dir():
        raise SystemExit(f"no benchmark data in {args.data} (see ../shared/data/README.md); pass --data DIR")
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    skip_baseline = {int(s) for s in args.no_baseline_at.split(",") if s.strip()}
    work = (args.work or Path(tempfile.mkdtemp(prefix="newsroom-writes-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    baseline_src = ensure_worktree(work / "baseline-src", BASELINE)
    bind_code(baseline_src)  # this process only coordinates; perf.py's helpers on the fixed code
    from perf import machine

    dirty = git("status", "--porcelain", "--", "index", "service")
    differs = [new for new, old in PIPELINE_FILES
               if _code_lines((ROOT / new).read_text(encoding="utf-8"))
               != _code_lines(git("show", f"{BASELINE}:{old}"))]
    results: dict[str, Any] = {
        "machine": machine(), "cpu_model": cpu_model(), "date": date.today().isoformat(),
        "command": "python benchmarks/writes.py " + shlex.join(sys.argv[1:]),
        "baseline_commit": BASELINE, "working_tree": f"commit {git('rev-parse', '--short', 'HEAD')}"
        + (" with uncommitted changes to index/ and service/" if dirty else ", no uncommitted changes"),
        "pipeline_differs": differs, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sizes": [], "churn": None}
    print(f"Machine: {results['machine']}; lscpu: {results['cpu_model']}; work dir {work}", flush=True)
    if differs:
        print(f"warning: pipeline files differ from {BASELINE}: {', '.join(differs)}", flush=True)
    real_chunks = min(args.real_chunks, max([*sizes, args.churn_size]))
    common = {"data": str(args.data.resolve()), "work": str(work), "real_chunks": real_chunks, "seed": args.seed,
              "merges": args.merges, "keep": args.keep, "bulk_max": args.bulk_max}
    srcs = {"today": baseline_src, "segmented": ROOT}
    try:
        for size in sizes:
            entry: dict[str, Any] = {"size": size}
            results["sizes"].append(entry)
            for code in CODES:
                if code == "today" and size in skip_baseline:
                    entry[code] = {"not_run": "--no-baseline-at"}
                    continue
                cap = args.baseline_max_writes if code == "today" and size >= args.baseline_cap_from else None
                job = {**common, "kind": "writes", "code": code, "size": size, "adds": args.adds,
                       "deletes": args.deletes, "max_writes": cap}
                entry[code] = launch(job, srcs[code], work)
                print(json.dumps({k: v for k, v in entry[code].items() if k not in ("add", "add_store", "delete")}
                                 | {m: {k: v for k, v in entry[code][m].items() if k != "seconds"}
                                    for m in ("add", "add_store", "delete") if m in entry[code]}), flush=True)
                write_report(results, args.out)
        if args.churn_size:
            job = {**common, "kind": "churn", "code": args.churn_code, "size": args.churn_size,
                   "churn_adds": args.churn_adds, "queries": args.queries, "rounds": args.search_rounds}
            results["churn"] = launch(job, srcs[args.churn_code], work)
            write_report(results, args.out)
    finally:
        if not args.keep:
            remove_worktree(baseline_src)
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out / 'writes.md'} and {args.out / 'writes.json'}")


if __name__ == "__main__":
    main()
