"""The segmented data directory: a write costs its batch, deletes are tombstones, merges keep scores and data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from index.errors import DocumentNotFound
from index.local.store import DocumentWrite, LexicalQuery, MergePolicy, Snapshot, Store
from index.local.verify import verify
from index.models import Chunk, Document, Sentence
from tests.index.test_store import DIM, assert_consistent, make_write

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "articles"


def article_writes(n: int = 24) -> list[DocumentWrite]:
    """Real article paragraphs as documents of one or two chunks, with random unit vectors."""
    paragraphs = [p for f in sorted(FIXTURES.iterdir()) if f.is_file()
                  for p in f.read_text(encoding="utf-8").split("\n") if len(p) > 60]
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        first, second = paragraphs[(2 * i) % len(paragraphs)], paragraphs[(2 * i + 1) % len(paragraphs)]
        text = f"{first} {second}"
        doc_id = f"a{i}"
        chunks = [Chunk(chunk_id=f"{doc_id}#0", doc_id=doc_id, seq=0, start=0, end=len(first), text=first),
                  Chunk(chunk_id=f"{doc_id}#1", doc_id=doc_id, seq=1, start=len(first) + 1, end=len(text),
                        text=second)]
        vectors = rng.normal(size=(2, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.append(DocumentWrite(document=Document(id=doc_id, title=f"Story {i}", text=text, n_chunks=2),
                                 sentences=[Sentence(start=0, end=len(first)), Sentence(start=len(first) + 1,
                                                                                       end=len(text))],
                                 chunks=chunks, vectors=vectors))
    return out


def by_chunk(snap: Snapshot, scored: dict[int, float]) -> dict[tuple[str, int], float]:
    spans = snap.chunk_spans()
    return {(spans[r][0], spans[r][1]): round(s, 5) for r, s in scored.items()}


def all_scores(snap: Snapshot, query: LexicalQuery) -> dict[int, float]:
    """The query's BM25 score of every live chunk (ties at the cut of a top-k would make lists differ)."""
    rowids = sorted(snap.chunk_spans())
    return dict(zip(rowids, query.scores(rowids).tolist(), strict=True))


def files_of(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def test_a_write_adds_one_segment_and_leaves_the_stored_ones_untouched(tmp_path):
    store = Store(tmp_path, "m", DIM, merges="off")
    first = store.write(upserts=[make_write("a"), make_write("b", seed=1)])
    old = first.views[0].segment.path
    before = files_of(old)
    snap = store.write(upserts=[make_write("c", seed=2)], deletes=["a"])
    assert snap.views[0].segment.path == old and files_of(old) == before  # not copied, not rewritten
    assert snap.views[1].segment.info.n_documents == 1  # the new segment holds the batch only
    assert snap.manifest.segments[0].deleted == ["a"]  # the delete is a tombstone
    assert {d.id for d in snap.documents()} == {"b", "c"} and snap.manifest.n_documents == 2
    with pytest.raises(DocumentNotFound):
        snap.document("a")
    assert "a" not in {p.doc_id for _, p in snap.passages(snap.dense_search(make_write("a").vectors[0], 3))}
    assert verify(tmp_path).ok


def test_optimize_merges_everything_and_drops_deleted_articles(tmp_path):
    store = Store(tmp_path, "m", DIM, merges="off")
    for i in range(5):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    store.write(deletes=["d1"])
    store.write(upserts=[make_write("d3", text="Replaced text. Second sentence here.", seed=9)])
    assert store.stats().segments == 6 and store.stats().deleted_documents == 2
    snap = store.optimize()
    assert len(snap.views) == 1 and snap.manifest.segments[0].deleted == []
    assert snap.views[0].segment.info.n_documents == 4 and snap.views[0].segment.info.made_by == "merge"
    assert snap.document("d3").text.startswith("Replaced")
    assert {d.id for d in snap.documents()} == {"d0", "d2", "d3", "d4"}
    assert store.stats().merges == 1 and verify(tmp_path).ok
    assert assert_consistent(tmp_path) == {"d0", "d2", "d3", "d4"}
    assert len(list((tmp_path / "segments").iterdir())) <= 7  # merged sources go once two generations drop them


def test_scores_of_an_archive_written_in_many_batches_equal_those_of_one_write(tmp_path):
    """Exact collection statistics: BM25 (chunks, articles, feedback) and dense search give the same scores whether
    the archive was written at once or in batches with deletes and replacements between them."""
    writes = article_writes()
    one = Store(tmp_path / "one", "m", DIM).write(upserts=writes)
    store = Store(tmp_path / "many", "m", DIM, merges="off")
    for i in range(0, len(writes), 3):
        store.write(upserts=writes[i:i + 3])
        if i >= 6:
            store.write(deletes=[writes[i - 6].document.id])  # gone for a while, then written again
            store.write(upserts=[writes[i - 6]])
    many = store.snapshot()
    assert len(many.views) > 8 and any(v.deleted for v in many.views)
    for query in ["the council said the bridge", "harbour sludge dumped", writes[7].chunks[1].text[:60]]:
        for options in [{}, {"doc_weight": 0.6}, {"doc_weight": 0.6, "feedback_terms": 5}]:
            a, b = one.lexical_query(query, **options), many.lexical_query(query, **options)
            assert a.search(10) and by_chunk(one, all_scores(one, a)) == by_chunk(many, all_scores(many, b))
    for w in writes[:5]:
        assert by_chunk(one, dict(one.dense_search(w.vectors[0], 8))) == \
            by_chunk(many, dict(many.dense_search(w.vectors[0], 8)))
    merged = store.optimize()
    query = "the council said the bridge"
    assert by_chunk(one, all_scores(one, one.lexical_query(query, 0.6))) == \
        by_chunk(merged, all_scores(merged, merged.lexical_query(query, 0.6)))


def test_the_merge_policy_keeps_the_segments_few(tmp_path):
    policy = MergePolicy(segments_per_tier=3, floor_chunks=1)
    store = Store(tmp_path, "m", DIM, merge_policy=policy)  # inline merges
    for i in range(40):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    stats = store.stats()
    assert stats.merges > 10 and stats.segments <= 2 * 4  # at most per_tier - 1 segments in each of ~4 tiers
    assert assert_consistent(tmp_path) == {f"d{i}" for i in range(40)} and verify(tmp_path).ok


def test_a_segment_mostly_deleted_is_rewritten_without_them(tmp_path):
    store = Store(tmp_path, "m", DIM, merge_policy=MergePolicy(deletes_allowed=0.5))
    store.write(upserts=[make_write(f"d{i}", seed=i) for i in range(4)])
    store.write(deletes=["d0", "d1"])
    assert store.stats().deleted_documents == 2  # half: still allowed
    snap = store.write(deletes=["d2"])
    assert store.stats().deleted_documents == 0 and snap.views[0].segment.info.n_documents == 1


def test_an_article_deleted_while_a_merge_runs_stays_deleted(tmp_path):
    store = Store(tmp_path, "m", DIM, merges="off")
    for i in range(4):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    other = Store(tmp_path, "m", DIM, merges="off")  # as another process would, with its own locks

    def checkpoint(step: str) -> None:
        if step == "merge-segment-sqlite-written":  # the merge read its sources; the write lock is free
            other.write(deletes=["d2"], upserts=[make_write("late", seed=7)])

    store.checkpoint = checkpoint
    snap = store.optimize()
    assert {d.id for d in snap.documents()} == {"d0", "d1", "d3", "late"}
    assert len(snap.views) == 2 and snap.manifest.segments[0].deleted == ["d2"]  # carried to the merged segment
    assert verify(tmp_path).ok


def test_background_merges_run_beside_writes_and_searches(tmp_path):
    store = Store(tmp_path, "m", DIM, merge_policy=MergePolicy(segments_per_tier=3, floor_chunks=1),
                  merges="background")
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        try:
            while not stop.is_set():
                snap = store.snapshot()
                hits = snap.passages(snap.dense_search(make_write("d0").vectors[0], 5))
                assert len({p.doc_id for _, p in hits}) == len(hits)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    reader = threading.Thread(target=search)
    reader.start()
    for i in range(30):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    store.wait_for_merges()
    stop.set()
    reader.join()
    assert errors == []
    assert store.stats().merges > 0 and store.stats().segments < 10
    assert assert_consistent(tmp_path) == {f"d{i}" for i in range(30)} and verify(tmp_path).ok


MERGER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from index.local.store import Store
    store = Store(__import__("pathlib").Path({data!r}), "m", 8, merges="off")
    def checkpoint(step):
        if step == {kill_at!r}:
            os.kill(os.getpid(), signal.SIGKILL)
    store.checkpoint = checkpoint
    store.optimize()
""")


@pytest.mark.parametrize("step", ["merge-segment-sqlite-written", "merge-segment-lexical-written",
                                  "merge-segment-faiss-written", "merge-segment-synced", "merge-segment-renamed",
                                  "merge-committing", "manifest-written", "pointer-written", "published"])
def test_kill_inside_a_merge_leaves_the_archive_whole(tmp_path, step):
    store = Store(tmp_path, "m", DIM, merges="off")
    for i in range(4):
        store.write(upserts=[make_write(f"d{i}", seed=i)])
    store.write(deletes=["d1"])
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", MERGER.format(root=root, data=str(tmp_path), kill_at=step)])
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert verify(tmp_path).ok
    assert assert_consistent(tmp_path) == {"d0", "d2", "d3"}
    segments = len(Store(tmp_path, "m", DIM).snapshot().views)
    assert segments == (1 if step == "published" else 4)  # the merge happened entirely or not at all
    snap = Store(tmp_path, "m", DIM).optimize()  # and the next one runs, clearing the debris
    assert len(snap.views) == 1 and verify(tmp_path).ok
    assert not [p for p in (tmp_path / "segments").iterdir() if ".tmp-" in p.name]
    assert os.listdir(tmp_path / "segments")


def test_a_format_1_data_directory_is_upgraded_on_first_open(tmp_path):
    """What the previous version wrote (one SQLite store and FAISS index per generation) opens as one segment."""
    import json
    import sqlite3

    import faiss

    gen = tmp_path / "gen-000003"
    gen.mkdir()
    db = sqlite3.connect(gen / "store.sqlite")
    db.executescript("""
        CREATE TABLE documents (id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, source TEXT,
            published TEXT, url TEXT, n_chunks INTEGER NOT NULL, added_at TEXT NOT NULL);
        CREATE TABLE sentences (doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL,
            end INTEGER NOT NULL, PRIMARY KEY (doc_id, seq)) WITHOUT ROWID;
        CREATE TABLE chunks (rowid INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE,
            doc_id TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL);""")
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    for rowid, w in [(7, make_write("a")), (9, make_write("b", seed=1))]:
        doc = w.document
        db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, NULL, NULL, 1, '2026-01-01T00:00:00')",
                   (doc.id, doc.title, doc.text, doc.source))
        db.executemany("INSERT INTO sentences VALUES (?, ?, ?, ?)",
                       [(doc.id, i, s.start, s.end) for i, s in enumerate(w.sentences)])
        db.execute("INSERT INTO chunks VALUES (?, ?, ?, 0, ?, ?)", (rowid, f"{doc.id}#0", doc.id, 0, len(doc.text)))
        index.add_with_ids(w.vectors, np.array([rowid], dtype=np.int64))
    db.commit()
    db.close()
    faiss.write_index(index, str(gen / "index.faiss"))
    (gen / "manifest.json").write_text(json.dumps({
        "format_version": 1, "model_id": "m", "dimension": DIM, "n_documents": 2, "n_chunks": 2, "generation": 3,
        "updated_at": "2026-01-01T00:00:00"}))
    (tmp_path / "CURRENT").write_text("gen-000003\n")
    store = Store(tmp_path, "m", DIM)
    snap = store.snapshot()
    assert snap.manifest.format_version == 2 and len(snap.views) == 1 and snap.manifest.next_rowid == 10
    assert snap.sentences("b") == make_write("b").sentences
    hit = snap.passages(snap.dense_search(make_write("b", seed=1).vectors[0], 1))[0]
    assert hit[0] == 9 and hit[1].doc_id == "b"  # row ids and vectors kept
    store.write(upserts=[make_write("c", seed=2)])
    assert assert_consistent(tmp_path) == {"a", "b", "c"} and verify(tmp_path).ok


def test_small_segments_are_searched_with_numpy_exactly_as_faiss_would(tmp_path):
    store = Store(tmp_path, "m", DIM, merges="off")
    snap = store.write(upserts=[make_write(f"d{i}", seed=i) for i in range(30)])
    segment = snap.views[0].segment
    query = make_write("q", seed=99).vectors[0]
    scores, ids = segment.search(query, 5)
    want_scores, want_ids = segment.index.search(query.reshape(1, -1), 5)
    assert ids.tolist() == want_ids[0].tolist() and np.allclose(scores, want_scores[0], atol=1e-5)
    left_out = segment.search(query, 5, excluded=ids[:2])[1]
    assert not set(ids[:2].tolist()) & set(left_out.tolist()) and left_out[0] == ids[2]
    assert segment.search(query, 5, allowed=ids[3:4])[1].tolist() == [ids[3]]


def test_a_snapshot_whose_segments_are_collected_as_it_opens_them_opens_the_newer_generation(tmp_path, monkeypatch):
    """Another process (or this one's writer) may publish twice, collecting a generation's segments, between a
    reader's look at CURRENT and its opening of the files: the reader then opens the newer generation."""
    import index.local.store as store_module

    writer = Store(tmp_path, "m", DIM, merges="off")
    for i in range(3):
        writer.write(upserts=[make_write(f"d{i}", seed=i)])
    reader = Store(tmp_path, "m", DIM, merges="off")
    opened = store_module.Segment
    calls: list[Path] = []

    def racing(path: Path) -> object:
        calls.append(path)
        if len(calls) == 1:  # two publications while the reader opens its first segment: its generation is gone
            writer.optimize()
            writer.write(upserts=[make_write("late", seed=9)])
            assert not path.exists()
        return opened(path)

    monkeypatch.setattr(store_module, "Segment", racing)
    snap = reader.snapshot()
    assert {d.id for d in snap.documents()} == {"d0", "d1", "d2", "late"}
    assert len(calls) > 1 and verify(tmp_path).ok
