"""Retrieval quality does not depend on how the archive was written: one write, or fifty with deletes between them.

Real collections (TIME, SciFact test) through the real embedding model; both archives hold the same vectors, so
any difference would come from the segments (BM25 statistics, per-segment FAISS search, merging of hits).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from index.local.store import Store
from service.answering.qa import QAService
from service.evaluation.retrieval import Collection, evaluate, load_beir, load_time
from service.settings import Settings

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WRITES = 50


def _collections() -> list[tuple[str, Path]]:
    return [("time", DATA / "time_collection"), ("scifact", DATA / "beir_scifact")]


def _load(name: str, path: Path) -> Collection:
    return load_time(path) if name == "time" else load_beir(path, split="test")


@pytest.mark.parametrize(("name", "path"), _collections(), ids=[n for n, _ in _collections()])
def test_ndcg_is_the_same_whether_written_once_or_in_fifty_writes_with_deletes(tmp_path, name, path):
    if not path.is_dir():
        pytest.skip(f"{path} is absent (../shared/data)")
    collection = _load(name, path)
    service = QAService.from_settings(Settings(data_dir=tmp_path / "one"), seed_if_empty=False)
    writes = service.indexer.prepare(collection.documents)
    service.store.write(upserts=writes)
    many = Store(tmp_path / "many", service.store.model_id, service.store.dimension, merges="inline")
    step = -(-len(writes) // WRITES)
    for n, first in enumerate(range(0, len(writes), step)):
        many.write(upserts=writes[first:first + step])
        if n % 5 == 4:  # every fifth write: delete a stored article, and put it back in the next write
            many.write(deletes=[writes[first - 1].document.id])
            many.write(upserts=[writes[first - 1]])
    assert many.stats().segments > 1 and many.stats().merges > 0
    segmented = copy.copy(service)
    segmented.store = many
    one, fifty = evaluate(service, collection), evaluate(segmented, collection)
    for mode, figures in one["results"].items():
        assert abs(figures["nDCG@10"] - fifty["results"][mode]["nDCG@10"]) <= 0.002, mode
