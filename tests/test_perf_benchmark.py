"""The performance benchmark's corpus and report: real articles in, synthetic fill with exact offsets, a table out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from index.models import Chunk, Document, Sentence

from .conftest import REPO_ROOT, SHARED_DIR

DATA = SHARED_DIR / "data"


@pytest.fixture(scope="module")
def perf():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("perf", REPO_ROOT / "benchmarks" / "perf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def analysed_article(doc_id: str, sentences: list[str]) -> tuple[Document, list[Sentence], list[Chunk]]:
    text, spans = "", []
    for s in sentences:
        if text:
            text += " "
        spans.append(Sentence(start=len(text), end=len(text) + len(s)))
        text += s
    chunk = Chunk(chunk_id=f"{doc_id}#0", doc_id=doc_id, seq=0, start=0, end=len(text), text=text)
    return Document(id=doc_id, title=f"T {doc_id}", text=text, n_chunks=1), spans, [chunk]


@pytest.mark.skipif(not (DATA / "bbc_news").is_dir(), reason="../shared/data is not here")
def test_real_articles_come_from_three_outlets_with_valid_ids(perf):
    articles = perf.load_articles(DATA)
    assert len(articles) > 28_000
    assert {a.source for a in articles[:8]} == {"BBC News", "Reuters", "AG News"}
    assert len({a.id for a in articles}) == len(articles)
    assert any(a.published is not None for a in articles if a.source == "Reuters")


def test_synthetic_articles_quote_real_sentences_at_exact_offsets(perf):
    real = [analysed_article(f"r{i}", [f"Sentence {i} number {j} of the real article." for j in range(5)])
            for i in range(20)]
    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pool = {doc.text[s.start:s.end] for doc, sentences, _ in real for s in sentences}
    extra, extra_vectors = perf.synthetic(real, vectors, 300)
    n_chunks = sum(len(chunks) for _, _, chunks in extra)
    assert n_chunks >= 300 and extra_vectors.shape == (n_chunks, 8)
    assert np.allclose(np.linalg.norm(extra_vectors, axis=1), 1, atol=1e-5)
    for doc, sentences, chunks in extra:
        assert all(doc.text[s.start:s.end] in pool for s in sentences)
        assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    assert len({doc.text for doc, _, _ in extra}) > 0.9 * len(extra)  # copies would be folded as duplicates
    taken, taken_vectors = perf.take(real, vectors, 5)
    assert len(taken) == 5 and len(taken_vectors) == 5


def test_report_shows_ratios_and_every_size(perf, tmp_path: Path):
    size = {"chunks": 10_000, "real_chunks": 10_000, "index": "flat", "nprobe": 0, "recall_at_10": 1.0,
            "build_s": 12.0, "cold_start_s": 9.5, "search_p50_ms": 20.0, "search_p95_ms": 30.0,
            "search_repeat_p50_ms": 9.0, "ask_p50_ms": 150.0, "ask_p95_ms": 300.0, "rss_mb": 900.0,
            "rss_anon_mb": 700.0, "rss_file_mb": 200.0,
            "haystack": {"search_p50_ms": 80.0, "memory_mb": 50.0, "write_s": 1.0, "search_p95_ms": 90.0}}
    results = {"machine": "2 cores", "date": "2026-11-23", "sizes": [size, {**size, "chunks": 100_000,
                                                                            "haystack": None}],
               "throughput": {"articles": 10, "chunks": 20, "precision": "fp32", "cosine_to_naive_min": 1.0,
                              "naive_chunks_per_s": 20.0, "pipeline_chunks_per_s": 30.0,
                              "end_to_end_chunks_per_s": 15.0, "end_to_end_articles_per_s": 7.5,
                              "haystack_chunks_per_s": 19.0, "torch_chunks_per_s": 24.0,
                              "torch_cosine_to_naive": [0.99999, 0.99997], "batch_backend": "auto",
                              "pipeline_engine": "openvino-int8", "pipeline_cosine_to_naive": [0.996, 0.99],
                              "first_batch": {"texts": 300, "seconds": 25.0, "engine": "openvino-int8",
                                              "calibrated": True, "engine_speeds": {
                                                  "torch": 24.0, "openvino": 22.0, "openvino-int8": 31.0}},
                              "openvino_skipped": "cannot embed batches with OpenVINO: openvino is not installed"}}
    perf.write_report(results, tmp_path / "RESULTS.md")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| project pipeline, embedding only | 30.0 | 1.50 |" in text
    assert ("batch engine: `BATCH_BACKEND=auto`, which ran these chunks on `openvino-int8` (cosine to the naive "
            "baseline's vectors mean 0.9960, worst 0.9900)") in text
    assert ("| other engine `BATCH_BACKEND=torch`, embedding only (cosine to naive mean 1.0000, worst 1.0000) | "
            "24.0 | 1.20 |") in text
    assert "| other engine `BATCH_BACKEND=openvino` | not run: cannot embed batches with OpenVINO" in text
    # 300 chunks at 30/s is 10 s of the first batch's 25: 15 s once; 10,000 chunks: 10000 / (333.3 + 15) / 20
    assert ("`auto` timed the engines on the first bulk batch's first texts (`torch` 24.0, `openvino` 22.0, "
            "`openvino-int8` 31.0 texts/s) and chose `openvino-int8`.") in text
    assert "about 15 s once per model and machine" in text and "10,000 chunks runs at 1.44x" in text
    assert "| 10,000 (10,000) | flat | 1.000 |" in text and "| 4.0x |" in text
    assert "| 100,000 (10,000) |" in text and "not run" in text
    assert ("| indexing >= 4x the naive fp32 baseline (chunks/s) | 1.50x (`openvino-int8`; `torch` 1.20x) | "
            "no |") in text
    assert "| `/v1/search` p50 <= 25 ms at 100k chunks | 20.0 ms | yes |" in text
    assert "| faster than Haystack 2 in-memory at every size | 4x (not run at 100,000) | yes where run |" in text


def test_the_memory_target_is_judged_under_the_cap_by_what_was_read_again(perf, tmp_path: Path):
    row = {"chunks": 1_000_000, "real_chunks": 10_000, "index": "ivf", "nprobe": 384, "recall_at_10": 0.99,
           "build_s": 300.0, "cold_start_s": 6.0, "search_p50_ms": 30.0, "search_p95_ms": 35.0,
           "search_repeat_p50_ms": 25.0, "ask_p50_ms": 100.0, "ask_p95_ms": 120.0, "rss_mb": 1990.0,
           "rss_anon_mb": 980.0, "rss_file_mb": 1010.0}
    capped = {"cap_mb": 2048, "cap_peak_mb": 1915.0, "search_p50_ms": 31.0, "ask_p50_ms": 105.0, "rss_mb": 1900.0,
              "rss_anon_mb": 980.0}
    throughput = {"articles": 10, "chunks": 20, "precision": "bf16", "cosine_to_naive_min": 1.0,
                  "naive_chunks_per_s": 20.0, "pipeline_chunks_per_s": 50.0, "end_to_end_chunks_per_s": 15.0,
                  "end_to_end_articles_per_s": 7.5}
    for refault, verdict in ((0.4, "yes"), (300.0, "no")):
        results = {"machine": "m", "date": "d", "throughput": throughput,
                   "sizes": [{**row, "capped": {**capped, "cap_refault_mb": refault}}]}
        perf.write_report(results, tmp_path / "RESULTS.md")
        line = next(x for x in (tmp_path / "RESULTS.md").read_text().splitlines() if "memory at 1M" in x)
        assert "2,048 MB memory cgroup" in line and line.endswith(f"| {verdict} |")


def test_a_memory_cap_charges_the_child_and_evicting_files_is_harmless(perf, tmp_path: Path):
    import subprocess

    import memcap

    (tmp_path / "a.bin").write_bytes(b"x" * 4096)
    memcap.evict_from_cache(tmp_path)  # clean pages only: the data is still there
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 4096
    cap = memcap.make_cap(1024, name="newsroom-test")
    if cap is None:
        pytest.skip("this machine lets no process make a memory cgroup")
    try:
        code = "b = bytearray(200 * 2**20); b[::4096] = b'y' * len(b[::4096])"
        subprocess.run(cap.command([sys.executable, "-c", code]), check=True, timeout=60)
        assert 200 <= cap.peak_mb() <= 1024 and cap.refaults() >= 0
    finally:
        cap.remove()
    assert not cap.path.exists()


def test_haystack_takes_arrays_only_where_lists_cannot_fit(perf):
    per_chunk = 26 / 1024  # MB per chunk that Haystack grew with lists at 100k chunks
    small_need, small = perf.haystack_need_mb(per_chunk, 100_000, 384)
    big_need, big = perf.haystack_need_mb(per_chunk, 1_000_000, 384)
    assert small == "list" and small_need < perf.total_mb()
    assert big == "array" and big_need < per_chunk * 1_000_000  # ~10 KB a chunk less than lists


@pytest.mark.parametrize("embeddings", ["list", "array"])
def test_haystack_peer_runs_with_lists_and_with_arrays_and_text_in_meta(perf, tmp_path: Path, embeddings: str):
    pytest.importorskip("haystack", reason="the bench extra (haystack-ai) is not installed")
    from index.embedding.embedder import bundled_model_path

    real = [analysed_article(f"r{i}", [f"Sentence {i} of article {i}."]) for i in range(30)]
    vectors = np.random.default_rng(1).normal(size=(30, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    folder = perf.haystack_inputs(real, vectors, str(bundled_model_path()), ["which sentence?"], tmp_path / "h",
                                  embeddings)
    peer = perf.haystack_peer(folder)
    assert "skipped" not in peer, peer
    assert peer["embeddings"] == embeddings and peer["search_p50_ms"] > 0 and not folder.exists()
