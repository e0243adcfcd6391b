"""The data directory: persistence, replacement, model checks and atomic saves under SIGKILL."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from index.errors import DataDirError, DocumentNotFound, ModelMismatch
from index.local.store import DocumentWrite, Store
from index.models import Chunk, Document, Filters, Sentence

DIM = 8


def make_write(doc_id: str, text: str = "First sentence. Second sentence.", seed: int = 0,
               source: str = "Wire") -> DocumentWrite:
    sentences = [Sentence(start=0, end=15), Sentence(start=16, end=len(text))]
    chunks = [Chunk(chunk_id=f"{doc_id}#0", doc_id=doc_id, seq=0, start=0, end=len(text), text=text)]
    vec = np.random.default_rng(seed).normal(size=(1, DIM)).astype(np.float32)
    vec /= np.linalg.norm(vec)
    doc = Document(id=doc_id, title=f"Title {doc_id}", text=text, source=source, n_chunks=1)
    return DocumentWrite(document=doc, sentences=sentences, chunks=chunks, vectors=vec)


def n_vectors(snap) -> int:
    """Live vectors across the snapshot's segments (FAISS ids less each segment's tombstoned chunks)."""
    return sum(v.segment.index.ntotal - len(v.dead_rowids) for v in snap.views)


def test_empty_data_dir_is_created_on_first_open(tmp_path):
    store = Store(tmp_path / "data", "m", DIM)
    assert not store.exists()
    snap = store.snapshot()
    assert (snap.manifest.n_documents, snap.manifest.n_chunks, snap.manifest.model_id) == (0, 0, "m")
    assert store.exists()


def test_documents_persist_across_reopen(tmp_path):
    Store(tmp_path, "m", DIM).write(upserts=[make_write("a"), make_write("b", seed=1)])
    snap = Store(tmp_path, "m", DIM).snapshot()
    assert snap.manifest.n_documents == 2 and n_vectors(snap) == 2
    assert snap.document("a").text == "First sentence. Second sentence."
    assert snap.sentences("a") == [Sentence(start=0, end=15), Sentence(start=16, end=32)]


def test_same_id_replaces_and_delete_removes(tmp_path):
    store = Store(tmp_path, "m", DIM)
    store.write(upserts=[make_write("a")])
    snap = store.write(upserts=[make_write("a", text="Other sentence. Replaced text here.")])
    assert snap.manifest.n_documents == 1 and n_vectors(snap) == 1
    assert snap.document("a").text.startswith("Other")
    snap = store.write(deletes=["a"])
    assert snap.manifest.n_documents == 0 and n_vectors(snap) == 0
    with pytest.raises(DocumentNotFound):
        snap.document("a")


def test_deleting_unknown_id_changes_nothing(tmp_path):
    store = Store(tmp_path, "m", DIM)
    store.write(upserts=[make_write("a")])
    before = store.snapshot().manifest.generation
    with pytest.raises(DocumentNotFound, match="'nope'"):
        store.write(deletes=["a", "nope"])
    snap = store.snapshot()
    assert snap.manifest.generation == before and snap.document("a")


def test_search_ranks_by_cosine_and_filters(tmp_path):
    store = Store(tmp_path, "m", DIM)
    writes = [make_write(f"d{i}", seed=i, source="A" if i % 2 else "B") for i in range(6)]
    snap = store.write(upserts=writes)
    query = writes[3].vectors[0]
    hits = [p for _, p in snap.passages(snap.dense_search(query, top_k=3))]
    assert hits[0].doc_id == "d3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].text == snap.document("d3").text[hits[0].start:hits[0].end]
    only_b = snap.passages(snap.dense_search(query, 6, snap.allowed_rowids(Filters(sources=["B"]))))
    assert {p.doc_id for _, p in only_b} == {"d0", "d2", "d4"}
    assert snap.dense_search(query, 3, snap.allowed_rowids(Filters(doc_ids=["zzz"]))) == []
    assert snap.allowed_rowids(Filters()) is None  # no restriction


def test_other_model_is_refused(tmp_path):
    Store(tmp_path, "model-a", DIM).write(upserts=[make_write("a")])
    with pytest.raises(ModelMismatch, match=r"built with embedding model 'model-a'.*'model-b'"):
        Store(tmp_path, "model-b", DIM).snapshot()
    with pytest.raises(ModelMismatch):
        Store(tmp_path, "model-a", DIM * 2).snapshot()


def test_damaged_pointer_is_reported(tmp_path):
    Store(tmp_path, "m", DIM).snapshot()
    (tmp_path / "CURRENT").write_text("gen-999999\n")
    with pytest.raises(DataDirError, match="damaged"):
        Store(tmp_path, "m", DIM).snapshot()


def test_old_generations_are_collected(tmp_path):
    store = Store(tmp_path, "m", DIM)
    for i in range(5):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    gens = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gen-"))
    assert len(gens) == 2 and (tmp_path / "CURRENT").read_text().strip() == gens[-1]


WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tests.index.test_store import make_write
    from index.local.store import Store
    store = Store(__import__("pathlib").Path({data!r}), "m", 8)
    kill_at = {kill_at!r}
    if kill_at:
        def checkpoint(step):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        store.checkpoint = checkpoint
    for i in range({rounds}):
        store.write(upserts=[make_write("new%d" % i, seed=100 + i)], deletes=["old"] if kill_at else [])
""")


def run_writer(data: Path, kill_at: str | None = None, rounds: int = 1) -> subprocess.Popen[bytes]:
    root = str(Path(__file__).resolve().parents[2])
    code = WRITER.format(root=root, data=str(data), kill_at=kill_at, rounds=rounds)
    return subprocess.Popen([sys.executable, "-c", code])


def assert_consistent(data: Path) -> set[str]:
    snap = Store(data, "m", DIM).snapshot()
    ids = {d.id for d in snap.documents(1000)}
    assert n_vectors(snap) == snap.manifest.n_chunks == len(ids) == snap.manifest.n_documents
    assert set(snap.lexical.live_rowids.tolist()) == set(snap.chunk_spans())  # BM25 and FAISS: the same chunks
    for doc_id in ids:
        assert snap.document(doc_id).text
    return ids


@pytest.mark.parametrize("step", ["changes-applied", "segment-sqlite-written", "segment-lexical-written",
                                  "segment-faiss-written", "segment-synced", "segment-renamed", "manifest-written",
                                  "generation-renamed", "pointer-written", "published"])
def test_kill_at_each_write_step_leaves_old_or_new_state(tmp_path, step):
    Store(tmp_path, "m", DIM).write(upserts=[make_write("old")])
    proc = run_writer(tmp_path, kill_at=step)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    ids = assert_consistent(tmp_path)
    assert ids == ({"new0"} if step == "published" else {"old"})
    # The next write after the crash works and cleans up the debris of the killed one.
    Store(tmp_path, "m", DIM).write(upserts=[make_write("after")])
    assert "after" in assert_consistent(tmp_path)
    assert not [p for p in [*tmp_path.iterdir(), *(tmp_path / "segments").iterdir()] if ".tmp-" in p.name]


@pytest.mark.slow
def test_kill_at_random_moments_during_many_writes(tmp_path):
    Store(tmp_path, "m", DIM).write(upserts=[make_write("old")])
    rng = np.random.default_rng(7)
    for delay in rng.uniform(0.3, 2.5, size=8):
        proc = run_writer(tmp_path, rounds=100_000)  # far more than fit in the delay
        time.sleep(float(delay))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL  # killed mid-run, not finished or failed
        assert "old" in assert_consistent(tmp_path)


def test_concurrent_writers_are_serialized(tmp_path):
    """Threads of one process and a second Store on the same directory write at once: every write lands."""
    import threading

    from index.local.verify import verify

    stores = [Store(tmp_path, "m", DIM), Store(tmp_path, "m", DIM)]  # as two processes would: separate objects
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(5):
                stores[n % 2].write(upserts=[make_write(f"w{n}-{i}", seed=10 * n + i)])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    # Finalise what earlier tests left to the collector first: psycopg_pool's __del__ (pools a PostgreSQL test left
    # open) joins its worker threads, letting other threads in at an arbitrary point, and CPython 3.11 then failed
    # numpy's header parse here with "AST constructor recursion depth mismatch" (python/cpython#106905).
    gc.collect()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert assert_consistent(tmp_path) == {f"w{n}-{i}" for n in range(4) for i in range(5)}
    assert verify(tmp_path).ok
