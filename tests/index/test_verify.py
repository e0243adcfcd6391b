"""``index verify`` finds damage; ``index repair`` makes the data directory verify again without losing articles."""

from __future__ import annotations

import sqlite3

import numpy as np
from click.testing import CliRunner

from index.local.store import Store
from index.local.verify import repair, verify
from service.cli import cli
from tests.index.test_store import DIM, make_write


def fake_embed(texts: list[str]) -> np.ndarray:
    vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def two_generations(tmp_path) -> Store:  # type: ignore[no-untyped-def]
    store = Store(tmp_path, "m", DIM)
    store.write(upserts=[make_write("a", seed=1)])
    store.write(upserts=[make_write("b", seed=2)])
    return store


def live_gen(tmp_path):  # type: ignore[no-untyped-def]
    return tmp_path / (tmp_path / "CURRENT").read_text().strip()


def newest_segment(tmp_path):  # type: ignore[no-untyped-def]
    """The segment of the last write (the one holding 'b')."""
    manifest = __import__("json").loads((live_gen(tmp_path) / "manifest.json").read_text())
    return tmp_path / "segments" / manifest["segments"][-1]["name"]


def test_a_fresh_data_dir_verifies(tmp_path):
    two_generations(tmp_path)
    report = verify(tmp_path)
    assert report.ok and report.problems == []
    assert any("FAISS holds exactly the 2 chunks" in c for c in report.checked)
    assert any(c.startswith("checksums of ") for c in report.checked)


def test_a_corrupted_vector_file_is_found_and_rebuilt(tmp_path):
    store = two_generations(tmp_path)
    faiss_file = newest_segment(tmp_path) / "index.faiss"
    data = bytearray(faiss_file.read_bytes())
    data[-5] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    report = verify(tmp_path)
    assert not report.ok and "index.faiss does not match its checksum" in report.problems[0]
    actions = repair(store, fake_embed)
    assert actions == ["rebuilt the vectors, BM25 and article centroids from the SQLite store in a new generation"]
    assert verify(tmp_path).ok
    assert {d.id for d in Store(tmp_path, "m", DIM).snapshot().documents()} == {"a", "b"}


def test_a_damaged_store_falls_back_to_the_last_good_generation(tmp_path):
    store = two_generations(tmp_path)
    damaged = live_gen(tmp_path)
    with sqlite3.connect(newest_segment(tmp_path) / "store.sqlite") as db:
        db.execute("DELETE FROM chunks WHERE doc_id = 'b'")
    report = verify(tmp_path)
    assert not report.ok
    assert any("store.sqlite does not match its checksum" in p for p in report.problems)
    assert any("counts disagree" in p for p in report.problems)
    actions = repair(store, fake_embed)
    assert actions[0].startswith("CURRENT now names gen-") and damaged.name in actions[0]
    assert verify(tmp_path).ok and damaged.is_dir()  # the damaged generation is kept for inspection


def test_a_pointer_to_nowhere_is_reported_and_repaired(tmp_path):
    store = two_generations(tmp_path)
    (tmp_path / "CURRENT").write_text("gen-999999\n")
    assert verify(tmp_path).problems == [f"CURRENT names 'gen-999999', which is not a generation in {tmp_path}"]
    repair(store, fake_embed)
    assert verify(tmp_path).ok


def test_verify_command_exit_codes(tmp_path):
    two_generations(tmp_path)
    ok = CliRunner().invoke(cli, ["index", "verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0 and ok.output.rstrip().endswith("verifies")
    (newest_segment(tmp_path) / "doc_vectors.npy").write_bytes(b"garbage")
    bad = CliRunner().invoke(cli, ["index", "verify", "--data-dir", str(tmp_path), "--json"])
    assert bad.exit_code == 1
    assert "doc_vectors.npy does not match its checksum" in " ".join(__import__("json").loads(bad.output)["problems"])
