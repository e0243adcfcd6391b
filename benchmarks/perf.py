"""Performance benchmark: indexing throughput, query latency over HTTP, ANN recall, memory and cold start by size.

    python benchmarks/perf.py                                # 10k, 100k, 1M chunks -> benchmarks/RESULTS.md + perf.png
    python benchmarks/perf.py --sizes 10000 --sample 200     # a quick run

Everything is measured in one run on this machine, with baselines measured in the same run:

- indexing throughput of the project's pipeline against a naive baseline (``SentenceTransformer.encode``, fp32,
  default settings, on the same chunks) and against Haystack 2's ``SentenceTransformersDocumentEmbedder``;
- for each corpus size: cold start of ``newsroom-qa serve`` to ``/readyz``, p50/p95 of ``/v1/search`` and
  ``/v1/ask`` over HTTP on loopback, the service's resident memory, recall@10 of the FAISS index the store chose
  against exact search, and the same retrieval through Haystack 2's in-memory pipeline (same model, same vectors).

Corpus: real news from ``../shared/data`` (BBC, Reuters-21578, AG News). The first ``--real-chunks`` chunks are
real articles, analysed and embedded by the pipeline (cached in ``benchmarks/.cache``). Larger sizes are filled
with synthetic articles made of real sentences drawn at random, with new ids; their vectors are synthetic (a real
chunk's vector plus noise, renormalised), because embedding 1M chunks on 2 cores would take about 10 hours. The
report says which part of each size is real.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import logging
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import free_port  # noqa: E402
from memcap import MemoryCap, evict_from_cache, make_cap  # noqa: E402

from index.embedding.embedder import Embedder  # noqa: E402
from index.errors import ModelUnavailable  # noqa: E402
from index.local import ann  # noqa: E402
from index.local.store import DocumentWrite, Store  # noqa: E402
from index.models import Chunk, Document, DocumentIn, Sentence  # noqa: E402
from index.pipeline.chunking import chunk_document  # noqa: E402
from service.answering.qa import QAService  # noqa: E402
from service.malloc import trim_heap  # noqa: E402
from service.settings import Settings  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- corpus ------------------------------------------------------------------------------------------------
def load_articles(data: Path) -> list[DocumentIn]:
    """BBC, Reuters and AG News articles, interleaved so any prefix mixes long and short ones."""
    bbc, reuters, ag = [], [], []
    with (data / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            body = row["text"].split("\n", 1)[-1].strip()  # the first line is the title
            if body:
                bbc.append(DocumentIn(id=f"bbc-{row['id'].replace('/', '-')}", title=row["title"][:1000], text=body,
                                      source="BBC News"))
    with (data / "reuters21578" / "reuters21578.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("body") and row.get("title"):
                try:
                    published: date | None = datetime.strptime(row["date"].split()[0], "%d-%b-%Y").date()
                except (ValueError, KeyError, IndexError):
                    published = None
                reuters.append(DocumentIn(id=f"reuters-{row['newid']}", title=row["title"][:1000],
                                          text=row["body"], source="Reuters", published=published))
    with (data / "ag_news_test" / "test.csv").open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh)):
            if row["description"].strip():
                ag.append(DocumentIn(id=f"ag-{n}", title=row["title"][:1000] or "untitled",
                                     text=row["description"].replace("\\", " "), source="AG News"))
    out: list[DocumentIn] = []
    for i in range(max(len(bbc), len(reuters), len(ag))):
        out += [lst[i] for lst in (bbc, reuters, reuters, ag) if i < len(lst)]
    return list({d.id: d for d in out}.values())


def questions(data: Path, n: int) -> list[str]:
    """NewsQA questions: real questions about news, used as the query workload."""
    squad = json.loads((data / "newsqa" / "newsqa-500.shared.json").read_text(encoding="utf-8"))
    qs = [qa["question"] for art in squad["data"] for par in art["paragraphs"] for qa in par["qas"]]
    return list(dict.fromkeys(qs))[:n]


Analysed = list[tuple[Document, list[Sentence], list[Chunk]]]


def chunk_texts(analysed: Analysed) -> list[str]:
    """The texts the pipeline embeds: ``title. chunk``."""
    return [f"{doc.title}. {c.text}" for doc, _, chunks in analysed for c in chunks]


def real_corpus(service: QAService, articles: list[DocumentIn], n_chunks: int) -> tuple[Analysed, np.ndarray]:
    """Analyse and embed real articles until ``n_chunks`` chunks (cached: spaCy and the model take minutes)."""
    embedder = service.embedder
    key = f"real-{n_chunks}-{embedder.model_id.replace('/', '_')}-{embedder.precision}-{embedder.batch_backend}.pkl"
    path = CACHE / key
    if path.is_file():
        with path.open("rb") as fh:
            cached: tuple[Analysed, np.ndarray] = pickle.load(fh)
        return cached
    from tqdm import tqdm

    analysed: Analysed = []
    total = 0
    with tqdm(total=n_chunks, desc="analysing real articles", unit="chunk") as bar:
        for doc in articles:
            item = service.indexer.analyse(doc)
            analysed.append(item)
            total += len(item[2])
            bar.update(len(item[2]))
            if total >= n_chunks:
                break
    vectors = service.embedder.embed(chunk_texts(analysed), show_progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump((analysed, vectors), fh)
    return analysed, vectors


def synthetic(analysed: Analysed, vectors: np.ndarray, n_chunks: int, seed: int = 0) -> tuple[Analysed, np.ndarray]:
    """Articles of 4-16 real sentences drawn at random, with synthetic vectors, until ``n_chunks`` chunks."""
    rng = np.random.default_rng(seed)
    pool = [doc.text[s.start:s.end] for doc, sentences, _ in analysed for s in sentences]
    titles = [doc.title for doc, _, _ in analysed]
    out: Analysed = []
    total, n = 0, 0
    while total < n_chunks:
        picked = [pool[i] for i in rng.integers(0, len(pool), int(rng.integers(4, 17)))]
        text, sentences, pos = "", [], 0
        for sentence in picked:
            if text:
                text += " "
                pos += 1
            sentences.append(Sentence(start=pos, end=pos + len(sentence)))
            text += sentence
            pos += len(sentence)
        doc_id = f"synthetic-{n}"
        chunks = chunk_document(doc_id, text, sentences)
        out.append((Document(id=doc_id, title=titles[int(rng.integers(0, len(titles)))], text=text,
                             source="synthetic", n_chunks=len(chunks)), sentences, chunks))
        total += len(chunks)
        n += 1
    noise = rng.normal(scale=0.5 / np.sqrt(vectors.shape[1]), size=(total, vectors.shape[1])).astype(np.float32)
    synth = vectors[rng.integers(0, len(vectors), total)] + noise
    return out, synth / np.linalg.norm(synth, axis=1, keepdims=True)


def take(analysed: Analysed, vectors: np.ndarray, n_chunks: int) -> tuple[Analysed, np.ndarray]:
    """The first whole articles holding about ``n_chunks`` chunks."""
    out: Analysed = []
    total = 0
    for item in analysed:
        if total >= n_chunks:
            break
        out.append(item)
        total += len(item[2])
    return out, vectors[:total]


def build_data_dir(path: Path, analysed: Analysed, vectors: np.ndarray, model_id: str) -> float:
    """Write a data directory in one atomic write; returns the seconds it took."""
    writes, offset = [], 0
    for doc, sentences, chunks in analysed:
        writes.append(DocumentWrite(document=doc, sentences=sentences, chunks=chunks,
                                    vectors=vectors[offset:offset + len(chunks)]))
        offset += len(chunks)
    started = time.perf_counter()
    Store(path, model_id, vectors.shape[1]).write(upserts=writes)
    return time.perf_counter() - started


# --- measurements ------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


# The other batch engines (BATCH_BACKEND), measured beside the configured pipeline
# (index/embedding/batch_encoder.py), int8 too where `auto` does not try it (no int8 dot products), so every run
# shows what the choice was between.
BATCH_ENGINES = ("torch", "openvino", "openvino-int8")

def throughput(service: QAService, articles: list[DocumentIn], sample: int, haystack: bool,
               repeats: int = 3) -> dict[str, Any]:
    """Chunks/s of embedding for the naive baseline, the pipeline and Haystack, on the same chunks; and the whole
    pipeline (clean, sentences, chunk, embed, store) in articles/s.

    The engines take turns, ``repeats`` rounds, and each figure is the median: one embedding call on this kind of
    machine varies by a quarter from run to run, more than the differences being measured.
    """
    from sentence_transformers import SentenceTransformer

    docs = articles[:sample]
    started = time.perf_counter()
    analysed = [service.indexer.analyse(d) for d in docs]
    analyse_s = time.perf_counter() - started
    texts = chunk_texts(analysed)
    result: dict[str, Any] = {"articles": len(docs), "chunks": len(texts), "analyse_s": analyse_s,
                              "precision": service.embedder.precision, "repeats": repeats,
                              "batch_backend": service.embedder.batch_backend}
    # The pipeline's first bulk batch, as a load's first write would be: other articles' chunks. Under
    # BATCH_BACKEND=auto the engines are timed on it, and where int8 is tried the model is quantized on it (once per
    # model: the cache dir keeps it).
    first = chunk_texts([service.indexer.analyse(d) for d in articles[sample:sample + 250]])
    started = time.perf_counter()
    service.embedder.embed(first)
    result["first_batch"] = {"texts": len(first), "seconds": time.perf_counter() - started,
                             "engine": service.embedder.last_batch_engine,
                             "calibrated": service.embedder.int8_calibrated,
                             "engine_speeds": service.embedder.batch_engine_speeds}

    naive = SentenceTransformer(service.embedder._resolve(), device="cpu")
    engines: dict[str, Callable[[], Any]] = {
        "naive": lambda: naive.encode(texts),  # the baseline: fp32, default batch size and settings
        "pipeline": lambda: service.embedder.embed(texts),
    }
    if haystack:
        from haystack import Document as HDocument
        from haystack.components.embedders import SentenceTransformersDocumentEmbedder

        h_embedder = SentenceTransformersDocumentEmbedder(model=service.embedder._resolve(), progress_bar=False,
                                                          normalize_embeddings=True)
        h_embedder.warm_up()
        engines["haystack"] = lambda: h_embedder.run(documents=[HDocument(content=t) for t in texts])
    for backend in BATCH_ENGINES:  # the other engines (BATCH_BACKEND), on the same loaded model
        other = Embedder(service.embedder.model_name, batch_size=service.embedder.batch_size,
                         precision=service.embedder.precision, batch_backend=backend,  # type: ignore[arg-type]
                         cache_dir=service.embedder.cache_dir)
        other.model, other._onnx = service.embedder.model, service.embedder._onnx
        engines[backend] = lambda other=other: other.embed(texts)
    outputs: dict[str, Any] = {}
    for name, run in list(engines.items()):  # warm-up: first calls allocate and pick kernels (int8: calibrates)
        try:
            outputs[name] = run()
        except ModelUnavailable as exc:
            result[f"{name}_skipped"] = str(exc)
            del engines[name]
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, run in engines.items():
            started = time.perf_counter()
            run()
            rates[name].append(len(texts) / (time.perf_counter() - started))
    for name, values in rates.items():
        result[f"{name}_chunks_per_s"] = float(np.median(values))
        result[f"{name}_chunks_per_s_range"] = [min(values), max(values)]
    naive_vectors = np.asarray(outputs["naive"])
    unit = naive_vectors / np.linalg.norm(naive_vectors, axis=1, keepdims=True)
    result["pipeline_engine"] = service.embedder.last_batch_engine
    pipeline_cosine = (unit * outputs["pipeline"]).sum(axis=1)
    result["cosine_to_naive_min"] = float(pipeline_cosine.min())
    result["pipeline_cosine_to_naive"] = [float(pipeline_cosine.mean()), float(pipeline_cosine.min())]
    for backend in BATCH_ENGINES:
        if backend in outputs:
            cosine = (unit * outputs[backend]).sum(axis=1)
            result[f"{backend}_cosine_to_naive"] = [float(cosine.mean()), float(cosine.min())]
    del engines, outputs  # and with them the baseline model
    gc.collect()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp), service.store.model_id, service.store.dimension)
        started = time.perf_counter()
        writes = service.indexer.embed_analysed([service.indexer.analyse(d) for d in docs])
        store.write(upserts=writes)
        elapsed = time.perf_counter() - started
    result["end_to_end_articles_per_s"] = len(docs) / elapsed
    result["end_to_end_chunks_per_s"] = len(texts) / elapsed
    return result


def ann_recall(data_dir: Path, vectors: np.ndarray, query_vectors: np.ndarray, model_id: str) -> dict[str, Any]:
    """recall@10 of the stored index against exact search, on real question vectors; and FAISS time alone."""
    snap = Store(data_dir, model_id, vectors.shape[1]).snapshot()
    index = snap.views[0].segment.index  # built in one write: one segment
    assert len(snap.views) == 1 and index.ntotal == len(vectors)  # rowids are 1..n in insertion order
    recall, p50 = dense_recall(snap, vectors, query_vectors)
    kind = ann.index_kind(index)
    nprobe = int(getattr(faiss_downcast(index), "nprobe", 0))
    return {"index": kind, "nprobe": nprobe, "recall_at_10": recall, "faiss_p50_ms": p50}


def dense_recall(snap: Any, vectors: np.ndarray, query_vectors: np.ndarray) -> tuple[float, float]:
    """recall@10 of ``snap.dense_search`` against exact search (tie-aware; row ids 1..n in ``vectors`` order) and
    its p50 milliseconds, for any backend's snapshot."""
    exact = ann.exact_top(vectors, query_vectors, 10)[0]
    hits, times = 0.0, []
    for q, exact_scores in zip(query_vectors, exact, strict=True):
        started = time.perf_counter()
        found = snap.dense_search(q, 10)
        times.append((time.perf_counter() - started) * 1000)
        found_scores = np.array([[float(vectors[r - 1] @ q) for r, _ in found]])
        hits += ann.recall_at_k(np.array([[r for r, _ in found]]), exact_scores[None, :], found_scores) * 10
    return hits / (10 * len(query_vectors)), pct(times, 50)


def ivf_on_real(vectors: np.ndarray, query_vectors: np.ndarray) -> dict[str, Any]:
    """The IVF index the store would build, forced onto the real chunk vectors alone: recall of real questions
    where every vector is a real embedding (the larger sizes are mostly synthetic)."""
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    flat = ann.new_exact_index(vectors.shape[1])
    flat.add_with_ids(vectors, ids)
    ivf = ann.fit_index(flat, ann.AnnSettings(exact_max=0))  # keep this proxy: it owns the index
    exact = ann.exact_top(vectors, query_vectors, 10)[0]
    _, found = ivf.search(query_vectors, 10)
    found_scores = np.einsum("qd,qkd->qk", query_vectors, vectors[np.maximum(found - 1, 0)])
    return {"chunks": len(vectors), "nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe),
            "recall_at_10": ann.recall_at_k(found, exact, found_scores)}


def faiss_downcast(index: Any) -> Any:
    import faiss

    return faiss.downcast_index(index)


def memory_of(pid: int) -> dict[str, float]:
    """Resident memory of a process in MB: total, anonymous (its own heap) and file-backed (mapped files)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "RssAnon", "RssFile", "VmHWM"}:
            fields[key] = int(value.split()[0]) / 1024
    return fields


def total_mb() -> float:
    """MemTotal of the machine in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return 0.0


def available_mb() -> float:
    """MemAvailable of the machine in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve_and_measure(data_dir: Path, search_qs: list[str], ask_qs: list[str],
                      extra_env: dict[str, str] | None = None, warm_qs: list[str] | None = None,
                      cap_mb: int = 0, evict: bool = False) -> dict[str, Any]:
    """Start the real service on a data dir (or, by ``extra_env``, another backend); cold start, latency of
    /v1/search and /v1/ask, memory.

    With ``cap_mb`` it runs in a memory cgroup of that limit, which counts the page cache it reads
    (``memcap.py``); ``evict`` drops the data dir's pages from the cache first, so that the service reads in (and is
    charged for) what it needs itself. ``warm_qs`` (other questions than the measured ones, so the query-embedding
    cache does not help) run before the measurement.
    """
    port = free_port()
    env = {**os.environ, "NEWSROOM_QA_DATA_DIR": str(data_dir), "NEWSROOM_QA_RATE_LIMIT": "off",
           "NEWSROOM_QA_RATE_LIMIT_ANONYMOUS": "off", "NEWSROOM_QA_LOG_FORMAT": "text",
           "NEWSROOM_QA_SEEDS_DIR": str(data_dir / "no-seeds"), **(extra_env or {})}
    exe = Path(sys.executable).with_name("newsroom-qa")
    cap: MemoryCap | None = make_cap(cap_mb) if cap_mb else None
    argv = [str(exe), "serve", "--port", str(port)]
    if evict and data_dir.is_dir():
        evict_from_cache(data_dir)
    started = time.perf_counter()
    proc = subprocess.Popen(cap.command(argv) if cap else argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.perf_counter() - started > 900:
                    raise SystemExit(f"the service on {data_dir} did not start")
                time.sleep(0.05)
            cold = time.perf_counter() - started
            memory_at_start = memory_of(proc.pid)

            def timed(path: str, body: dict[str, Any]) -> float:
                t0 = time.perf_counter()
                response = client.post(path, json=body)
                elapsed = (time.perf_counter() - t0) * 1000
                response.raise_for_status()
                return elapsed

            for q in ["warm up the model", "and the reader"]:
                timed("/v1/ask", {"question": q})
            for q in warm_qs or []:
                timed("/v1/search", {"query": q, "top_k": 10})
            for q in (warm_qs or [])[:len(ask_qs)]:
                timed("/v1/ask", {"question": q})
            refaults_before = cap.refaults() if cap else 0
            search = [timed("/v1/search", {"query": q, "top_k": 10}) for q in search_qs]
            repeat = [timed("/v1/search", {"query": q, "top_k": 10}) for q in search_qs[:30]]
            ask = [timed("/v1/ask", {"question": q}) for q in ask_qs]
            memory = memory_of(proc.pid)
            capped = {"cap_mb": cap.limit_mb, "cap_peak_mb": cap.peak_mb(),
                      "cap_refault_mb": (cap.refaults() - refaults_before) * 4096 / 2**20} if cap else {}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if cap:
            cap.remove()
    return {**capped, "cold_start_s": cold, "search_p50_ms": pct(search, 50), "search_p95_ms": pct(search, 95),
            "search_repeat_p50_ms": pct(repeat, 50), "ask_p50_ms": pct(ask, 50), "ask_p95_ms": pct(ask, 95),
            "rss_mb": memory["VmRSS"], "rss_anon_mb": memory["RssAnon"], "rss_file_mb": memory["RssFile"],
            "peak_rss_mb": memory["VmHWM"], "rss_at_ready_mb": memory_at_start["VmRSS"]}


def haystack_inputs(analysed: Analysed, vectors: np.ndarray, model_path: str, qs: list[str], folder: Path,
                    embeddings: str = "list") -> Path:
    """Write what the Haystack peer needs (chunks, vectors, model, questions) for ``haystack_peer``.

    :param embeddings: how its documents hold their vectors: ``list`` (Haystack's declared type, what its
        embedders produce) or ``array``: float32 NumPy arrays (which its store and retriever also take: ~10 KB less
        per chunk), with the text in ``meta`` instead of ``content``, so that a size lists cannot fit in this machine
        can still run. The store tokenises every ``content`` at write for BM25 statistics (a Counter per document),
        which embedding retrieval does not use: at 1M chunks, arrays with the text as content were killed out of
        memory at ~22 GB. Either way each hit carries its text; the ``array`` form only makes Haystack lighter.
    """
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "vectors.npy", vectors)
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as fh:
        for doc, _, chunks in analysed:
            for c in chunks:
                fh.write(json.dumps({"id": c.chunk_id, "content": c.text, "title": doc.title,
                                     "source": doc.source}) + "\n")
    (folder / "queries.json").write_text(json.dumps({"model": model_path, "queries": qs, "embeddings": embeddings}),
                                         encoding="utf-8")
    return folder


def haystack_peer(folder: Path) -> dict[str, Any]:
    """Haystack 2 in-memory pipeline (same model, same chunk vectors): write time, query latency, memory.

    It runs in a process of its own, fed from the files of ``haystack_inputs``, so it has the machine's memory
    rather than what this process leaves (its store keeps every vector as a Python list: ~26 KB per chunk), and its
    memory is its own growth.
    """
    try:
        done = subprocess.run([sys.executable, __file__, "--haystack-child", str(folder)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            why = "killed: out of memory" if done.returncode == -9 else " ".join(done.stderr.strip().splitlines()[-1:])
            return {"skipped": f"Haystack's process failed: {why}"}
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def haystack_need_mb(per_chunk_mb: float, size: int, dimension: int) -> tuple[float, str]:
    """(MB, embeddings) Haystack needs at ``size`` chunks, from its memory per chunk at a smaller size with lists:
    lists where they fit in this machine, else the ``array`` form of ``haystack_inputs`` (a list of ``dimension``
    Python floats takes ~32 bytes a number, an array 4), plus the float32 matrix its retriever builds for every
    query. At 1M chunks this said ~18 GB for arrays, and the array form grew by 16,528-17,993 MB in two runs."""
    need = per_chunk_mb * size * 1.05
    if need < total_mb():
        return need, "list"
    saved_mb = (56 + 32 * dimension - (112 + 4 * dimension)) / 2**20
    return ((per_chunk_mb - saved_mb) * size + 4 * dimension * size / 2**20) * 1.05, "array"


def haystack_child(folder: Path) -> None:
    """The Haystack side of ``haystack_peer``, in its own process: prints one JSON line of figures."""
    from haystack import Document as HDocument
    from haystack import Pipeline
    from haystack.components.embedders import SentenceTransformersTextEmbedder
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    Path("/proc/self/oom_score_adj").write_text("1000")  # if memory runs out, this process goes first
    spec = json.loads((folder / "queries.json").read_text(encoding="utf-8"))
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    as_lists = spec.get("embeddings", "list") == "list"
    rss_before = memory_of(os.getpid())["VmRSS"]
    store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
    write_s = 0.0
    with (folder / "chunks.jsonl").open(encoding="utf-8") as fh:
        batch: list[Any] = []
        for i, line in enumerate(fh):
            row = json.loads(line)
            meta = {"title": row["title"], "source": row["source"]}
            if as_lists:
                batch.append(HDocument(id=row["id"], content=row["content"], embedding=vectors[i].tolist(),
                                       meta=meta))
            else:  # see haystack_inputs: arrays, and the text where the store does not tokenise it
                batch.append(HDocument(id=row["id"], embedding=np.array(vectors[i], dtype=np.float32),
                                       meta={**meta, "text": row["content"]}))
            if len(batch) == 10_000:
                started = time.perf_counter()
                store.write_documents(batch)
                write_s += time.perf_counter() - started
                batch = []
        started = time.perf_counter()
        store.write_documents(batch)
        write_s += time.perf_counter() - started
        del batch
    pipe = Pipeline()
    pipe.add_component("embed", SentenceTransformersTextEmbedder(model=spec["model"], progress_bar=False,
                                                                 normalize_embeddings=True))
    pipe.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store, top_k=10))
    pipe.connect("embed.embedding", "retrieve.query_embedding")
    pipe.run({"embed": {"text": "warm up"}})
    times = []
    for q in spec["queries"]:
        started = time.perf_counter()
        pipe.run({"embed": {"text": q}})
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"write_s": write_s, "search_p50_ms": pct(times, 50), "search_p95_ms": pct(times, 95),
                      "memory_mb": memory_of(os.getpid())["VmRSS"] - rss_before,
                      "embeddings": "list" if as_lists else "array"}))


# --- report ------------------------------------------------------------------------------------------------
def size_child(job_file: Path) -> None:
    """One corpus size, in its own process (see ``main``): build the data dir, measure the service on it, write
    Haystack's inputs; the row goes back into ``job_file``."""
    job = json.loads(job_file.read_text(encoding="utf-8"))
    size, data, work = int(job["size"]), Path(job["data"]), Path(job["work"])
    service = QAService.from_settings(Settings(data_dir=work / "service-unused", cache_dir=work / "cache"),
                                      seed_if_empty=False)
    qs = questions(data, max(job["queries"], job["ask_queries"]) + 200)
    real, real_vectors = real_corpus(service, load_articles(data), job["real_chunks"])
    query_vectors = service.embedder.embed(qs[-200:])
    model_path, model_id = service.embedder._resolve(), service.store.model_id
    del service
    analysed, vectors = take(real, real_vectors, size)
    n_real = len(vectors)
    if n_real < size:
        extra, extra_vectors = synthetic(real, real_vectors, size - n_real)
        analysed, vectors = analysed + extra, np.concatenate([vectors, extra_vectors])
    del real, real_vectors
    data_dir = work / f"size-{size}"
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"size {size}: building a data dir of {len(vectors)} chunks ({n_real} real)", flush=True)
    row: dict[str, Any] = {"size": size, "chunks": len(vectors), "real_chunks": n_real}
    row["build_s"] = build_data_dir(data_dir, analysed, vectors, model_id)
    row.update(ann_recall(data_dir, vectors, query_vectors, model_id))
    search_qs, ask_qs = qs[:job["queries"]], qs[:job["ask_queries"]]
    row.update(serve_and_measure(data_dir, search_qs, ask_qs))
    if job["memory_cap_mb"]:  # a second start, for memory: cold cache, a hard limit, warmed on other questions
        capped = serve_and_measure(data_dir, search_qs, ask_qs, warm_qs=qs[-200:], cap_mb=job["memory_cap_mb"],
                                   evict=True)
        if "cap_mb" in capped:
            row["capped"] = {k: capped[k] for k in ("cap_mb", "cap_peak_mb", "cap_refault_mb", "search_p50_ms",
                                                    "ask_p50_ms", "rss_mb", "rss_anon_mb")}
        else:
            row["cap_unavailable"] = "no memory cgroup can be made here"
    need_mb, embeddings = haystack_need_mb(job["per_chunk_mb"], size, vectors.shape[1])
    inputs = None
    if job["haystack"] and need_mb < total_mb():  # else no point writing its inputs
        n_qs = job["haystack_queries"] if size <= 100_000 else 5
        inputs = haystack_inputs(analysed, vectors, model_path, qs[:min(job["queries"], n_qs)], work / "haystack",
                                 embeddings)
    job_file.write_text(json.dumps({"row": row, "inputs": str(inputs) if inputs else None, "need_mb": need_mb,
                                    "embeddings": embeddings}), encoding="utf-8")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags
           else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?")
    return f"{os.cpu_count()} cores, {model} ({isa}), Python {platform.python_version()}"


def _why(row: dict[str, Any]) -> str:
    return f" ({row['haystack_skipped']})" if row.get("haystack_skipped") else ""


def _rate(t: dict[str, Any], name: str) -> str:
    """``median (min-max)`` chunks/s of one engine."""
    spread = t.get(f"{name}_chunks_per_s_range")
    return f"{t[f'{name}_chunks_per_s']:.1f}" + (f" ({spread[0]:.1f}-{spread[1]:.1f})" if spread else "")


def _cosines(t: dict[str, Any], name: str) -> str:
    """``mean M, worst W`` of an engine's cosine to the naive baseline's vectors."""
    pair = t.get(f"{name}_cosine_to_naive") or [t["cosine_to_naive_min"]] * 2
    return f"mean {pair[0]:.4f}, worst {pair[1]:.4f}"


def _with_once(chunks: int, rate: float, once_s: float) -> float:
    """Chunks/s of a load of ``chunks`` that also pays a one-time cost."""
    return chunks / (chunks / rate + once_s)


def write_report(results: dict[str, Any], out: Path) -> None:
    t, sizes = results["throughput"], results["sizes"]
    lines = ["# Performance benchmark", "",
             f"One run of `python benchmarks/perf.py` on {results['machine']}, {results['date']}. "
             "Every ratio compares figures measured in this same run.", "",
             "## Indexing throughput", "",
             f"{t['articles']} real articles ({t['chunks']} chunks of real news). Embedding precision of the "
             f"pipeline: {t['precision']}; batch engine: `BATCH_BACKEND={t.get('batch_backend', 'torch')}`, which "
             f"ran these chunks on `{t.get('pipeline_engine', 'torch')}` (cosine to the naive baseline's vectors "
             f"{_cosines(t, 'pipeline')}).",
             f"Embedding figures are medians of {t.get('repeats', 1)} rounds in which the engines take turns "
             "(range in brackets).",
             "", "| what | chunks/s | ratio to naive |", "|---|---|---|",
             f"| naive baseline: `SentenceTransformer.encode`, fp32, default settings | {_rate(t, 'naive')} | 1.00 |",
             f"| project pipeline, embedding only | {_rate(t, 'pipeline')} | "
             f"{t['pipeline_chunks_per_s'] / t['naive_chunks_per_s']:.2f} |",
             f"| project pipeline, end to end (clean, sentences, chunk, embed, store) | "
             f"{t['end_to_end_chunks_per_s']:.1f} ({t['end_to_end_articles_per_s']:.1f} articles/s) | "
             f"{t['end_to_end_chunks_per_s'] / t['naive_chunks_per_s']:.2f} |"]
    if "haystack_chunks_per_s" in t:
        lines.append(f"| Haystack 2 `SentenceTransformersDocumentEmbedder` | {_rate(t, 'haystack')} | "
                     f"{t['haystack_chunks_per_s'] / t['naive_chunks_per_s']:.2f} |")
    for backend in BATCH_ENGINES:
        if f"{backend}_chunks_per_s" in t:
            lines.append(f"| other engine `BATCH_BACKEND={backend}`, embedding only (cosine to naive "
                         f"{_cosines(t, backend)}) | {_rate(t, backend)} | "
                         f"{t[f'{backend}_chunks_per_s'] / t['naive_chunks_per_s']:.2f} |")
        elif f"{backend}_skipped" in t:
            lines.append(f"| other engine `BATCH_BACKEND={backend}` | not run: {t[f'{backend}_skipped']} | |")
    first = t.get("first_batch")
    if first and first.get("engine_speeds"):
        speeds = ", ".join(f"`{name}` {speed:.1f}" for name, speed in first["engine_speeds"].items())
        lines += ["", f"`auto` timed the engines on the first bulk batch's first texts ({speeds} texts/s) and chose "
                  f"`{first['engine']}`."]
    if first and first.get("calibrated"):
        rate, naive = t["pipeline_chunks_per_s"], t["naive_chunks_per_s"]
        once = first["seconds"] - first["texts"] / rate  # the first batch's time beyond embedding it
        lines += ["", f"The pipeline's first bulk batch ({first['texts']} chunks of other articles) took "
                  f"{first['seconds']:.1f} s: int8 calibration on it and the engines' timing, about {once:.0f} s "
                  "once per model and machine (the quantized model is kept in the cache directory; later loads "
                  "reuse it). Counting it, a first "
                  f"load of 10,000 chunks runs at {_with_once(10_000, rate, once) / naive:.2f}x the naive baseline "
                  f"and one of 100,000 at {_with_once(100_000, rate, once) / naive:.2f}x."]
    lines += ["", "## By corpus size", "",
              "Latency over HTTP on loopback, one client, distinct NewsQA questions (`/v1/search` top 10 hybrid; "
              "`/v1/ask` retrieval + trained reader on 5 passages), on the data dir just written (its pages in the "
              "cache). Memory: resident set of the service process after the queries (anonymous = its own heap; "
              "file = memory-mapped index files and libraries, which count whole 64 KB runs of cached pages around "
              "each page read). Then, where a memory cgroup can be made, a second start under a hard limit that "
              "also counts the page cache it reads, after dropping the data dir from the cache and warming up on "
              "200 other questions (240 requests): its peak, how much it had to read again (thrashing) during the "
              "same measured queries, and their latency there. Haystack 2: in-memory document store and embedding "
              "retriever in a process of its own, same model and vectors, no HTTP; its memory is that process's "
              "growth, model included.", "",
              "| chunks (real) | index | recall@10 vs exact | build s | cold start s | search p50 / p95 ms | "
              "repeated query p50 ms | ask p50 / p95 ms | RSS MB (anon + file) | under the memory limit: peak MB / "
              "re-read MB; search / ask p50 ms | "
              "Haystack search p50 ms | Haystack / ours | Haystack MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sizes:
        hay = s.get("haystack")
        arrays = " (arrays, text in meta)" if hay and hay.get("embeddings") == "array" else ""
        hay_cells = (f"{hay['search_p50_ms']:.1f}{arrays} | {hay['search_p50_ms'] / s['search_p50_ms']:.1f}x | "
                     f"{hay['memory_mb']:.0f}") if hay else f"not run{_why(s)} | | "
        c = s.get("capped")
        capped = (f"{c['cap_peak_mb']:.0f} / {c['cap_refault_mb']:.1f}; {c['search_p50_ms']:.1f} / "
                  f"{c['ask_p50_ms']:.0f}" if c else "not run")
        lines.append(
            f"| {s['chunks']:,} ({s['real_chunks']:,}) | {s['index']}"
            f"{' nprobe ' + str(s['nprobe']) if s['nprobe'] else ''} | {s['recall_at_10']:.3f} | "
            f"{s['build_s']:.0f} | {s['cold_start_s']:.1f} | {s['search_p50_ms']:.1f} / {s['search_p95_ms']:.1f} | "
            f"{s['search_repeat_p50_ms']:.1f} | {s['ask_p50_ms']:.0f} / {s['ask_p95_ms']:.0f} | "
            f"{s['rss_mb']:.0f} ({s['rss_anon_mb']:.0f} + {s['rss_file_mb']:.0f}) | {capped} | {hay_cells} |")
    real_ivf = results.get("ivf_on_real")
    if real_ivf:
        lines += ["", f"IVF on real vectors only (the {real_ivf['chunks']:,} real chunks, forced into the index the "
                  f"store builds above its threshold): nlist {real_ivf['nlist']}, nprobe {real_ivf['nprobe']}, "
                  f"recall@10 of real questions {real_ivf['recall_at_10']:.3f}."]
    lines += ["", "## Targets", "", "| target | figure | met? |", "|---|---|---|"]
    ratio = t["pipeline_chunks_per_s"] / t["naive_chunks_per_s"]
    others = "".join(f"; `{b}` {t[f'{b}_chunks_per_s'] / t['naive_chunks_per_s']:.2f}x" for b in BATCH_ENGINES
                     if f"{b}_chunks_per_s" in t)
    extra = f" (`{t.get('pipeline_engine', 'torch')}`{others})"
    met = "yes" if ratio >= 4 else "no"
    lines.append(f"| indexing >= 4x the naive fp32 baseline (chunks/s) | {ratio:.2f}x{extra} | {met} |")
    at = {s["chunks"]: s for s in sizes}
    if 100_000 in at:
        row = at[100_000]
        lines.append(f"| `/v1/search` p50 <= 25 ms at 100k chunks | {row['search_p50_ms']:.1f} ms | "
                     f"{'yes' if row['search_p50_ms'] <= 25 else 'no'} |")
        lines.append(f"| `/v1/ask` p50 <= 120 ms at 100k chunks | {row['ask_p50_ms']:.1f} ms | "
                     f"{'yes' if row['ask_p50_ms'] <= 120 else 'no'} |")
    if 1_000_000 in at:
        row = at[1_000_000]
        if "capped" in row:
            c = row["capped"]
            fits = c["cap_refault_mb"] < 10  # it ran under the limit without reading anything twice
            lines.append(f"| service memory at 1M chunks <= 2 GB | in a {c['cap_mb']:,} MB memory cgroup (heap plus "
                         f"every page of the index it read): peak {c['cap_peak_mb']:,.0f} MB, "
                         f"{c['cap_refault_mb']:.1f} MB read again during the measured queries, search p50 "
                         f"{c['search_p50_ms']:.1f} ms, ask p50 {c['ask_p50_ms']:.0f} ms (unlimited: "
                         f"{row['search_p50_ms']:.1f} / {row['ask_p50_ms']:.0f} ms); RSS unlimited "
                         f"{row['rss_mb']:,.0f} MB, own (anonymous) {row['rss_anon_mb']:,.0f} MB | "
                         f"{'yes' if fits else 'no'} |")
        else:
            lines.append(f"| service memory at 1M chunks <= 2 GB | RSS {row['rss_mb']:.0f} MB, own (anonymous) "
                         f"{row['rss_anon_mb']:.0f} MB; no memory cgroup here to measure what it needs | "
                         f"own memory: {'yes' if row['rss_anon_mb'] <= 2048 else 'no'}; RSS: "
                         f"{'yes' if row['rss_mb'] <= 2048 else 'no'} |")
    for row in sizes:
        lines.append(f"| recall@10 >= 0.98 of exact at {row['chunks']:,} chunks | {row['recall_at_10']:.3f} | "
                     f"{'yes' if row['recall_at_10'] >= 0.98 else 'no'} |")
    run = [row for row in sizes if row.get("haystack")]
    if run:
        faster = all(row["haystack"]["search_p50_ms"] > row["search_p50_ms"] for row in run)
        skipped = [f"{row['chunks']:,}" for row in sizes if not row.get("haystack")]
        ratios = ", ".join(f"{r['haystack']['search_p50_ms'] / r['search_p50_ms']:.0f}x" for r in run)
        verdict = "no" if not faster else "yes where run" if skipped else "yes"
        lines.append(f"| faster than Haystack 2 in-memory at every size | {ratios}"
                     f"{' (not run at ' + ', '.join(skipped) + ')' if skipped else ''} | {verdict} |")
    lines += ["", "![latency and memory by corpus size](perf.png)", "",
              "Synthetic part of a size: articles of real sentences drawn at random with new ids, and vectors made "
              "from a real chunk's vector plus noise (embedding a million chunks here would take ~10 hours). "
              "Raw figures: `results/perf.json` beside this file.", ""]
    out.write_text("\n".join(lines), encoding="utf-8")


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    x = [s["chunks"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(x, [s["search_p50_ms"] for s in sizes], "o-", label="/v1/search p50")
    left.plot(x, [s["ask_p50_ms"] for s in sizes], "s-", label="/v1/ask p50")
    hx = [s["chunks"] for s in sizes if s.get("haystack")]
    if hx:
        left.plot(hx, [s["haystack"]["search_p50_ms"] for s in sizes if s.get("haystack")], "^--",
                  label="Haystack 2 in-memory search p50")
    left.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms", title="Query latency")
    left.legend()
    right.plot(x, [s["rss_mb"] for s in sizes], "o-", label="service RSS")
    right.plot(x, [s["rss_anon_mb"] for s in sizes], "s-", label="anonymous (heap)")
    capped = [(s["chunks"], s["capped"]["cap_peak_mb"]) for s in sizes if s.get("capped")]
    if capped:
        right.plot([c for c, _ in capped], [m for _, m in capped], "^--",
                   label="peak in a memory cgroup (page cache counted)")
    right.axhline(2048, color="grey", linestyle=":", label="2 GB")
    right.set(xscale="log", xlabel="chunks", ylabel="MB", title="Service memory")
    right.legend()
    fig.suptitle(results["machine"], fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes in chunks, comma-separated")
    parser.add_argument("--sample", type=int, default=400, help="articles for the throughput comparison")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the throughput comparison (median)")
    parser.add_argument("--real-chunks", type=int, default=10_000, help="real (embedded) chunks in the corpus")
    parser.add_argument("--queries", type=int, default=100, help="distinct /v1/search queries per size")
    parser.add_argument("--ask-queries", type=int, default=40, help="distinct /v1/ask questions per size")
    parser.add_argument("--haystack-max", type=int, default=1_000_000,
                        help="largest size run through Haystack (its store keeps vectors as Python lists: it runs "
                             "only where the memory it needed at the last size, scaled, is available)")
    parser.add_argument("--haystack-queries", type=int, default=30,
                        help="questions through Haystack up to 100k chunks; 5 above (each scans every vector)")
    parser.add_argument("--no-haystack", action="store_true")
    parser.add_argument("--memory-cap-mb", type=int, default=2048,
                        help="run the service in a memory cgroup of this limit, page cache counted (0 = off)")
    parser.add_argument("--work", type=Path, default=None, help="where to build data dirs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--keep", action="store_true", help="keep each size's data dir (in --work) for inspection")
    parser.add_argument("--haystack-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.haystack_child is not None:
        return haystack_child(args.haystack_child)
    if args.size_child is not None:
        warnings.filterwarnings("ignore")
        logging.basicConfig(level=logging.WARNING)
        return size_child(args.size_child)
    if not (args.data / "bbc_news").is_dir():
        raise SystemExit(f"no benchmark data in {args.data} (see ../shared/data/README.md); pass --data DIR")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    haystack = not args.no_haystack
    if haystack:
        try:
            import haystack as _  # noqa: F401
        except ImportError:
            print("haystack-ai is not installed (pip install -e '.[bench]'); skipping the Haystack peer")
            haystack = False

    work = args.work or Path(tempfile.mkdtemp(prefix="newsroom-bench-"))
    if args.keep:
        print(f"data dirs are kept in {work}", flush=True)
    service = QAService.from_settings(Settings(data_dir=work / "service-unused", cache_dir=work / "cache"),
                                      seed_if_empty=False)
    articles = load_articles(args.data)
    qs = questions(args.data, max(args.queries, args.ask_queries) + 200)
    print(f"{len(articles)} real articles; {machine()}", flush=True)

    results: dict[str, Any] = {"machine": machine(), "date": date.today().isoformat(), "sizes": []}
    results["throughput"] = throughput(service, articles, args.sample, haystack, args.repeats)
    print(json.dumps(results["throughput"], indent=1), flush=True)

    real, real_vectors = real_corpus(service, articles, min(args.real_chunks, max(sizes)))
    query_vectors = service.embedder.embed(qs[-200:])
    results["ivf_on_real"] = ivf_on_real(real_vectors, query_vectors)
    print(json.dumps(results["ivf_on_real"]), flush=True)
    per_chunk_mb = 0.0  # Haystack's memory per chunk, from the sizes run so far
    del real, real_vectors, service
    gc.collect()
    trim_heap()
    for size in sizes:
        # Each size in a process of its own: at 1M the corpus's objects leave this process's heap fragmented (it
        # kept 8 GB of the machine's 23 after them), and Haystack's store needs that memory next.
        job = {"size": size, "data": str(args.data), "work": str(work),
               "real_chunks": min(args.real_chunks, max(sizes)), "queries": args.queries,
               "ask_queries": args.ask_queries, "memory_cap_mb": args.memory_cap_mb,
               "haystack": haystack and size <= args.haystack_max, "haystack_queries": args.haystack_queries,
               "per_chunk_mb": per_chunk_mb}
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        if subprocess.run([sys.executable, __file__, "--size-child", str(work / "job.json")]).returncode:
            raise SystemExit(f"size {size}: the measuring process failed (its output is above); figures of the "
                             f"sizes before it are in {args.out / 'RESULTS.md'}")
        done = json.loads((work / "job.json").read_text(encoding="utf-8"))
        row, data_dir, need_mb, embeddings = done["row"], work / f"size-{size}", done["need_mb"], done["embeddings"]
        inputs = Path(done["inputs"]) if done["inputs"] else None
        trim_heap()
        if haystack and size <= args.haystack_max:
            if inputs is not None and need_mb < available_mb():
                peer = haystack_peer(inputs)
                if "skipped" in peer:
                    row["haystack_skipped"] = peer["skipped"]
                else:
                    row["haystack"] = peer
                    if embeddings == "list":
                        per_chunk_mb = peer["memory_mb"] / size  # the largest size so far predicts the next best
            else:
                if inputs is not None:
                    shutil.rmtree(inputs, ignore_errors=True)
                basis = ("with float32 arrays and the text in meta, " if embeddings == "array" else "") + \
                    "from its memory per chunk at the last size"
                row["haystack_skipped"] = (f"needs ~{need_mb / 1024:.0f} GB ({basis}), "
                                           f"{available_mb() / 1024:.0f} GB available")
        print(json.dumps(row), flush=True)
        results["sizes"].append(row)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        (args.out / "results").mkdir(parents=True, exist_ok=True)
        (args.out / "results" / "perf.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        write_report(results, args.out / "RESULTS.md")
        plot(results, args.out / "perf.png")
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'perf.png'}")


if __name__ == "__main__":
    main()
