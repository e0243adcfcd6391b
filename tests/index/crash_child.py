"""The ingestion run that ``test_crash_ingest`` kills: the real Indexer and Store, a hashing embedder that logs
which articles it embedded, and spaCy's rule-based sentencizer (fast to load, so many runs stay cheap).

    python tests/index/crash_child.py DATA_DIR EMBED_LOG KILL_AT    # KILL_AT 0: run to the end
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from index.models import DocumentIn  # noqa: E402

N_DOCS, BATCH, DIM, MODEL = 12, 4, 8, "hash-embedder"


class HashEmbedder:
    model_id, dimension = MODEL, DIM

    def __init__(self, log: Path) -> None:
        self.log = log

    def embed(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        with self.log.open("a") as fh:
            fh.writelines(t.split(".")[0] + "\n" for t in texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], dtype=np.uint8) for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), DIM) + 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def documents() -> list[DocumentIn]:
    return [DocumentIn(id=f"doc{i:02d}", title=f"Story {i:02d}",
                       text=" ".join(f"Sentence {j} of story {i} says something new." for j in range(6)))
            for i in range(N_DOCS)]


def ingest(data: Path, log: Path, kill_at: int = 0) -> int:
    """Run the bulk ingestion; SIGKILL this process at the ``kill_at``-th checkpoint. Returns checkpoints passed."""
    import spacy

    from index.local.store import Store
    from index.pipeline.cleaning import load_debris_rules
    from index.pipeline.indexer import Indexer

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    store = Store(data, MODEL, DIM)
    calls = [0]

    def checkpoint(step: str) -> None:
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    store.checkpoint = checkpoint
    indexer = Indexer(store, HashEmbedder(log), nlp, load_debris_rules(ROOT / "prompts" / "debris.toml"),
                      chunk_max_chars=120)
    indexer.add_in_batches(documents(), batch_size=BATCH)
    return calls[0]


if __name__ == "__main__":
    print(ingest(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
