"""A real ingestion process (Indexer.add_in_batches -> Store) killed with SIGKILL at many points of its writes.

Each time the data directory must load and verify, hold whole batches only (old or new state, never a mix), and a
rerun must finish the job embedding only the articles that were not stored yet. The child process uses the real
indexing and storage code with two stand-ins that keep 24 process starts fast: spaCy's rule-based sentencizer
instead of the parser, and a deterministic hashing embedder that logs which articles it embedded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from index.local.store import Store
from index.local.verify import verify
from tests.index.crash_child import BATCH, DIM, MODEL, N_DOCS, ingest

CHILD = Path(__file__).with_name("crash_child.py")
KILL_POINTS = 24


def run_child(data: Path, log: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHILD), str(data), str(log), str(kill_at)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> int:
    """How many checkpoints a complete, uninterrupted ingestion passes."""
    tmp = tmp_path_factory.mktemp("full")
    done = run_child(tmp / "data", tmp / "embedded.log", kill_at=0)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def stored_ids(data: Path) -> set[str]:
    return {d.id for d in Store(data, MODEL, DIM).snapshot().documents(1000)}


@pytest.mark.slow
@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_anywhere_in_an_ingestion_then_resume(tmp_path, checkpoints, point):
    assert checkpoints >= 3 * KILL_POINTS // 2  # the kill points below are spread over a long write sequence
    kill_at = 1 + round(point * (checkpoints - 1) / (KILL_POINTS - 1))
    data, log = tmp_path / "data", tmp_path / "embedded.log"
    killed = run_child(data, log, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    if (data / "CURRENT").exists():
        report = verify(data)
        assert report.ok, report.problems
        before = stored_ids(data)
    else:
        before = set()  # killed before the first generation was published: nothing to load yet
    all_ids = [f"doc{i:02d}" for i in range(N_DOCS)]
    assert before in [set(all_ids[:n]) for n in range(0, N_DOCS + 1, BATCH)]  # whole batches only

    log.unlink(missing_ok=True)
    ingest(data, log)  # the rerun, in this process: same code, no kill
    assert verify(data).ok and stored_ids(data) == set(all_ids)
    embedded = set(log.read_text().splitlines()) if log.exists() else set()
    # The rerun embedded exactly the articles the killed run had not stored: nothing done twice.
    assert embedded == {f"Story {doc_id[3:]}" for doc_id in set(all_ids) - before}
