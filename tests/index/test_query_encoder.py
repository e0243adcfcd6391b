"""Single queries embedded through ONNX Runtime give the PyTorch model's vectors; the export is cached."""

from __future__ import annotations

import numpy as np
import pytest

from index.embedding.embedder import Embedder
from index.errors import ModelUnavailable

QUERIES = ["Who doubted the pipeline claim?", "Saydnaya", "How many barrels a week were emptied into the water "
           "supply, according to the inspectors who visited in March?", "word " * 400]


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory):
    embedder = Embedder(query_backend="onnx", query_cache_size=0, cache_dir=tmp_path_factory.mktemp("cache"))
    embedder.warm_up()
    return embedder


def test_onnx_query_vectors_match_pytorch(onnx_embedder):
    assert onnx_embedder.query_engine == "onnx"
    reference = onnx_embedder.embed(QUERIES)  # the batch path stays on PyTorch
    for query, want in zip(QUERIES, reference, strict=True):
        got = onnx_embedder.embed_query(query)
        assert got.dtype == np.float32 and abs(np.linalg.norm(got) - 1) < 1e-5
        assert float(got @ want) > 0.9999, query[:30]


def test_the_export_is_cached_and_a_damaged_cache_is_rebuilt(onnx_embedder):
    files = list((onnx_embedder.cache_dir / "onnx").glob("*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = Embedder(query_backend="onnx", cache_dir=onnx_embedder.cache_dir)
    again.warm_up()
    assert files[0].stat().st_mtime_ns == stamp and again.query_engine == "onnx"
    weights = files[0].with_name(files[0].name + ".data")  # the weights live beside the graph, mapped at load
    assert weights.stat().st_size > 80_000_000 and files[0].stat().st_size < 1_000_000
    files[0].write_bytes(b"not an onnx model")
    repaired = Embedder(query_backend="onnx", cache_dir=onnx_embedder.cache_dir)
    repaired.warm_up()
    assert repaired.query_engine == "onnx" and files[0].stat().st_size > 1000
    with weights.open("r+b") as f:  # cut short, as by a full disk
        f.truncate(1000)
    again = Embedder(query_backend="onnx", cache_dir=onnx_embedder.cache_dir)
    again.warm_up()
    assert again.query_engine == "onnx" and weights.stat().st_size > 80_000_000


def test_torch_backend_and_auto_fallback(tmp_path, monkeypatch):
    torch_only = Embedder(query_backend="torch", cache_dir=tmp_path)
    torch_only.warm_up()
    assert torch_only.query_engine == "torch" and not (tmp_path / "onnx").exists()
    import index.embedding.query_encoder as qe

    monkeypatch.setattr(qe, "MIN_COSINE", 1.01)  # no export can pass: auto falls back, onnx refuses
    fallback = Embedder(query_backend="auto", cache_dir=tmp_path)
    fallback.warm_up()
    assert fallback.query_engine == "torch"
    with pytest.raises(ModelUnavailable, match="ONNX"):
        Embedder(query_backend="onnx", cache_dir=tmp_path).warm_up()
