"""The bundled embedding model: verified at load, normalised output, configurable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from index import batch_encoder
from index.embedding import BUNDLED_MODEL, PAD_TO_MULTIPLE, Embedder, bundled_model_path
from index.errors import ModelUnavailable

pytestmark = pytest.mark.integration


def test_bundled_model_is_verified_and_embeds_unit_vectors(embedder):
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert embedder.dimension == 384
    vectors = embedder.embed(["Who doubted the claim?", "The trust doubted the pipeline claim.", "Apples."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_wrong_checksum_is_refused():
    with pytest.raises(ModelUnavailable, match=r"has sha256 53aa5117.*expected 0000"):
        Embedder(BUNDLED_MODEL, expected_sha256="0" * 64).warm_up()


def test_model_given_by_local_path_is_its_own_model_id():
    path = str(bundled_model_path())
    model = Embedder(path)
    assert model.model_id == path and model.expected_sha256 is None
    model.warm_up()
    assert model.dimension == 384


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="cannot load embedding model"):
        Embedder(str(tmp_path / "no-such-model")).warm_up()


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be greater than 0"):
        Embedder(batch_size=0)


def test_bf16_matches_fp32(embedder):
    texts = ["The harbour authority denied the accusation.", "Farmers picked 300 tonnes of apples."]
    fp32 = Embedder(precision="fp32")
    fp32.model = embedder.model  # same loaded weights, other precision
    bf16 = Embedder(precision="bf16")
    bf16.model = embedder.model
    cosine = (fp32.embed(texts) * bf16.embed(texts)).sum(axis=1)
    assert cosine.min() > 0.999


def test_repeated_queries_come_from_the_cache(embedder):
    cached = Embedder(query_cache_size=2)
    cached.model = embedder.model  # the same loaded model, a fresh cache
    first = cached.embed_query("Who doubted the pipeline claim?")
    again = cached.embed_query("Who doubted the pipeline claim?")
    assert again is first and cached.cache_hits == 1 and not first.flags.writeable
    assert np.allclose(first, embedder.embed(["Who doubted the pipeline claim?"])[0], atol=1e-5)
    cached.embed_query("a")
    cached.embed_query("b")  # evicts the oldest
    cached.embed_query("Who doubted the pipeline claim?")
    assert cached.cache_hits == 1 and len(cached._query_cache) == 2


def test_batches_are_padded_to_few_shapes_and_vectors_do_not_move(embedder):
    """Every new padded length costs oneDNN kernels that stay (a long-running ingester grew without bound)."""
    words = ["the", "harbour", "authority", "denied", "that", "the", "grain", "had", "left", "the", "port"]
    texts = [" ".join(words[i % len(words):] + words * (i % 17)) for i in range(60)]  # 3 to ~260 tokens
    lengths: list[int] = []
    embeddings = embedder.model[0].auto_model.embeddings  # BERT's first layer sees the padded token ids
    hook = embeddings.register_forward_pre_hook(
        lambda _module, _args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    small_batches = Embedder(batch_size=4)
    small_batches.model = embedder.model
    try:
        padded = small_batches.embed(texts)
        seen = sorted(set(lengths))
        text_kwargs = embedder.model[0].processing_kwargs["text"]
        text_kwargs.pop("pad_to_multiple_of")
        lengths.clear()
        try:
            longest_only = small_batches.embed(texts)
        finally:
            text_kwargs["pad_to_multiple_of"] = PAD_TO_MULTIPLE
    finally:
        hook.remove()
    assert seen and all(n % PAD_TO_MULTIPLE == 0 for n in seen) and len(seen) <= 256 // PAD_TO_MULTIPLE
    assert len(set(lengths)) > len(seen)  # without the padding the same batches make more shapes
    assert (padded * longest_only).sum(axis=1).min() > 0.9999


def test_a_model_that_cannot_pad_batches_is_named_in_a_warning(caplog):
    class PlainModule:  # a first module without sentence-transformers 6's processing_kwargs
        pass

    with caplog.at_level("WARNING", logger="index.embedding"):
        Embedder._pad_batches([PlainModule()])  # type: ignore[arg-type]
    assert "cannot pad batches to a multiple of 32 tokens" in caplog.text


TEXTS = ["Fire.", "Who doubted the crematorium claim?",
         "The harbour authority denied that the grain shipment had left the port before the strike. " * 12,
         "Farmers picked 300 tonnes of apples.", "The mayor of Vellmont resigned on Tuesday after the audit."]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_embeds_batches_like_pytorch_in_the_order_given(embedder, precision):
    openvino = Embedder(precision=precision, batch_size=2, batch_backend="auto")
    openvino.model = embedder.model
    reference = Embedder(precision="fp32")
    reference.model = embedder.model
    assert openvino.batch_engine == "openvino"
    vectors = openvino.embed(TEXTS)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference.embed(TEXTS)).sum(axis=1).min() > 0.9999  # row by row: the order is kept
    encoder = openvino._batch_encoder()
    assert encoder is not None
    lengths = [batch["input_ids"].shape[1] for _, batch in encoder._batches(TEXTS)]
    assert len(lengths) == 3 and all(n % PAD_TO_MULTIPLE == 0 for n in lengths)


def test_without_openvino_batches_fall_back_to_pytorch_or_fail_clearly(embedder, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    auto = Embedder(batch_backend="auto")
    auto.model = embedder.model
    assert auto.batch_engine == "torch"
    assert auto.embed(TEXTS[:2]).shape == (2, 384)
    required = Embedder(batch_backend="openvino")
    required.model = embedder.model
    with pytest.raises(ModelUnavailable, match="cannot embed batches with OpenVINO: openvino is not installed"):
        required.embed(TEXTS[:2])


def test_openvino_output_that_does_not_match_pytorch_is_not_used(embedder, monkeypatch):
    monkeypatch.setattr(batch_encoder, "MIN_COSINE", 1.01)  # no output can match: the load-time check must refuse
    auto = Embedder(batch_backend="auto")
    auto.model = embedder.model
    assert auto.batch_engine == "torch"
    required = Embedder(batch_backend="openvino")
    required.model = embedder.model
    with pytest.raises(ModelUnavailable, match="OpenVINO output differs from PyTorch"):
        required.embed(TEXTS[:2])


def test_the_batch_backend_setting_reaches_the_embedder(monkeypatch):
    from service.qa import build_embedder
    from service.settings import Settings

    monkeypatch.setenv("NEWSROOM_QA_BATCH_BACKEND", "openvino")
    assert build_embedder(Settings()).batch_backend == "openvino"
    assert build_embedder(Settings(batch_backend="auto")).batch_backend == "auto"
    assert Embedder().batch_backend == "torch"  # the default keeps a serving process small


def test_int8_is_calibrated_on_the_first_batch_and_stays_close_to_pytorch(embedder):
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 8)]
    int8 = Embedder(batch_backend="openvino-int8", batch_size=4)
    int8.model = embedder.model
    vectors = int8.embed(texts)  # the first batch: its texts are the calibration set
    assert int8.batch_engine == "openvino-int8"
    reference = Embedder(precision="fp32")
    reference.model = embedder.model
    cosine = (vectors * reference.embed(texts)).sum(axis=1)
    assert cosine.min() > batch_encoder.INT8_MIN_COSINE and cosine.mean() > 0.99
    assert cosine.min() < 0.9999  # int8 really ran: bf16 and fp32 engines stay above 0.9999


def test_int8_without_nncf_is_a_clear_error(embedder, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    int8 = Embedder(batch_backend="openvino-int8")
    int8.model = embedder.model
    with pytest.raises(ModelUnavailable, match="nncf is not installed"):
        int8.embed(TEXTS)
