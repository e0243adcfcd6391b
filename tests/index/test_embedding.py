"""The bundled embedding model: verified at load, normalised output, configurable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from index.embedding import batch_encoder, engine_choice
from index.embedding import embedder as embedding
from index.embedding.batch_encoder import REQUEST_BATCH, REQUEST_PAD_TO_MULTIPLE
from index.embedding.embedder import (
    BULK_TEXTS,
    BUNDLED_MODEL,
    PAD_TO_MULTIPLE,
    Embedder,
    bf16_is_faster,
    bundled_model_path,
    resolve_precision,
)
from index.embedding.engine_choice import choose_batch_engine, int8_flags_in, measure_speeds
from index.errors import ModelUnavailable
from tests.conftest import sharing_embedder

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


@pytest.fixture
def fresh_probe():
    """bf16_is_faster measures once per process; each test here measures (or fakes) its own CPU."""
    bf16_is_faster.cache_clear()
    yield
    bf16_is_faster.cache_clear()


@pytest.mark.parametrize(("has_flag", "fp32_s", "bf16_s", "expected"), [
    (True, 2.0, 1.0, "bf16"),   # AMX-like: bf16 products twice as fast
    (True, 1.1, 1.0, "fp32"),   # a near tie is not worth the precision
    (True, 1.0, 1.5, "fp32"),   # AVX-512 BF16 flag, but bf16 slower (the Intel Xeon without AMX)
    (False, 9.0, 1.0, "fp32"),  # no bf16 instructions: not even measured
])
def test_auto_precision_follows_measured_speed_not_cpu_flags(monkeypatch, fresh_probe, has_flag, fp32_s, bf16_s,
                                                             expected):
    timed: list[str] = []
    monkeypatch.setattr(embedding, "cpu_has_bf16", lambda: has_flag)
    monkeypatch.setattr(embedding, "_matmul_speeds",
                        lambda: timed.append("both") or {"float32": 1 / fp32_s, "bfloat16": 1 / bf16_s})
    assert resolve_precision("auto") == expected
    assert Embedder(precision="auto").precision == expected
    assert bool(timed) == has_flag
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"  # explicit choices stand


def test_matmul_probe_times_both_types_on_this_cpu(fresh_probe):
    speeds = embedding._matmul_speeds(rounds=2)
    assert set(speeds) == {"float32", "bfloat16"}
    assert all(np.isfinite(speed) and speed > 0 for speed in speeds.values())
    assert isinstance(bf16_is_faster(), bool)


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

    with caplog.at_level("WARNING", logger="index.embedding.embedder"):
        Embedder._pad_batches([PlainModule()])  # type: ignore[arg-type]
    assert "cannot pad batches to a multiple of 32 tokens" in caplog.text


TEXTS = ["Fire.", "Who doubted the crematorium claim?",
         "The harbour authority denied that the grain shipment had left the port before the strike. " * 12,
         "Farmers picked 300 tonnes of apples.", "The mayor of Vellmont resigned on Tuesday after the audit."]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_embeds_batches_like_pytorch_in_the_order_given(embedder, precision):
    openvino = sharing_embedder(embedder, precision=precision, batch_size=2, batch_backend="openvino")
    reference = sharing_embedder(embedder, precision="fp32", batch_backend="torch")
    vectors = openvino.embed(TEXTS)
    assert openvino.last_batch_engine == "openvino"
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference.embed(TEXTS)).sum(axis=1).min() > 0.9999  # row by row: the order is kept
    encoder = openvino._batch_encoder(TEXTS)
    assert encoder is not None
    lengths = [batch["input_ids"].shape[1] for _, batch in encoder._batches(TEXTS)]
    assert len(lengths) == 3 and all(n % REQUEST_PAD_TO_MULTIPLE == 0 for n in lengths)


def test_openvino_reuses_its_requests_in_flight_and_keeps_every_row_in_place(embedder):
    openvino = sharing_embedder(embedder, batch_backend="openvino")  # the embedder's 32 a batch: capped per request
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 11)]  # lengths mixed: sorted into batches, put back in order
    encoder = openvino._batch_encoder(texts)
    assert encoder is not None and encoder.batch_size == REQUEST_BATCH and encoder.parallel_requests >= 2
    assert len(texts) > 2 * REQUEST_BATCH * encoder.parallel_requests  # every request runs more than once
    with_bar = encoder.encode(texts, show_progress=True)
    reference = sharing_embedder(embedder, precision="fp32", batch_backend="torch").embed(texts)
    assert (with_bar * reference).sum(axis=1).min() > 0.9999
    assert np.array_equal(openvino.embed(texts), with_bar)  # the same again through the embedder


def test_a_released_batch_engine_is_loaded_again_by_the_next_batch(embedder):
    openvino = sharing_embedder(embedder, batch_backend="openvino")
    assert not openvino.batch_engine_loaded and not openvino.release_batch_engine()  # nothing held yet
    first = openvino.embed(TEXTS)
    assert openvino.batch_engine_loaded and openvino.last_batch_engine == "openvino"
    assert openvino.release_batch_engine()
    assert not openvino.batch_engine_loaded and not openvino.release_batch_engine()
    again = openvino.embed(TEXTS)
    assert openvino.batch_engine_loaded and openvino.last_batch_engine == "openvino"
    assert np.allclose(first, again, atol=1e-5)
    torch_only = sharing_embedder(embedder, batch_backend="torch")
    torch_only.embed(TEXTS)
    assert not torch_only.release_batch_engine() and torch_only.last_batch_engine == "torch"


def bulk(n: int = BULK_TEXTS) -> list[str]:
    """``n`` distinct news-like texts of varied length: a batch large enough for ``auto`` to call it bulk."""
    return [f"{TEXTS[i % len(TEXTS)]} Report {i} from the {['north', 'harbour', 'council'][i % 3]} desk."
            for i in range(n)]


def _floor(engine: str) -> float:
    return batch_encoder.INT8_MIN_COSINE if engine == "openvino-int8" else 0.9999


def test_auto_runs_bulk_batches_on_the_engine_measured_fastest_and_small_ones_on_pytorch(embedder, tmp_path):
    auto = sharing_embedder(embedder, batch_backend="auto", cache_dir=tmp_path)
    reference = sharing_embedder(embedder, precision="fp32", batch_backend="torch")
    small = auto.embed(TEXTS)
    assert auto.last_batch_engine == "torch" and auto._openvino is None  # a small batch never loads OpenVINO
    assert (small * reference.embed(TEXTS)).sum(axis=1).min() > 0.9999
    texts = bulk()
    vectors = auto.embed(texts)
    speeds = auto.batch_engine_speeds
    expected = {"torch", "openvino"} | ({"openvino-int8"} if engine_choice.cpu_has_fast_int8() else set())
    assert set(speeds) == expected and all(s > 0 for s in speeds.values())
    assert auto.last_batch_engine == choose_batch_engine(speeds)
    assert (vectors * reference.embed(texts)).sum(axis=1).min() > _floor(auto.last_batch_engine)
    auto.embed(TEXTS)
    assert auto.last_batch_engine == "torch"  # small batches stay on PyTorch once OpenVINO is loaded


@pytest.mark.parametrize(("speeds", "chosen"), [
    ({"torch": 16.5, "openvino": 19.1, "openvino-int8": 15.1}, "openvino"),  # AVX2, no VNNI (measured)
    ({"torch": 39.7, "openvino": 35.9, "openvino-int8": 64.7}, "openvino-int8"),  # AVX-512 VNNI (measured)
    ({"torch": 40.0, "openvino": 30.0, "openvino-int8": 44.0}, "torch"),  # int8 ahead, but not by 1.2x
    ({"torch": 20.0, "openvino": 19.0}, "torch"),
])
def test_auto_takes_the_fastest_engine_and_int8_only_by_a_clear_margin(speeds, chosen):
    assert choose_batch_engine(speeds) == chosen


def test_int8_is_not_tried_without_int8_dot_products(embedder, monkeypatch, tmp_path):
    monkeypatch.setattr(embedding, "cpu_has_fast_int8", lambda: False)
    auto = sharing_embedder(embedder, batch_backend="auto", cache_dir=tmp_path)
    auto.embed(bulk())
    assert set(auto.batch_engine_speeds) == {"torch", "openvino"} and not auto.int8_calibrated
    assert not list((tmp_path / "openvino").glob("*-int8-ov*"))  # no 50-second calibration for nothing


@pytest.mark.parametrize(("flags", "fast"), [
    ("flags\t\t: fpu sse avx2 fma", False), ("flags\t\t: fpu avx512f avx512_vnni", True),
    ("flags\t\t: fpu avx2 avx_vnni", True), ("flags\t\t: fpu amx_bf16 amx_int8", True),
    ("Features\t: fp asimd asimddp", True), ("Features\t: fp asimd", False), ("model name\t: avx512_vnni", False),
])
def test_int8_dot_products_are_read_off_the_cpu_flags(flags, fast):
    assert int8_flags_in(f"processor\t: 0\n{flags}\n") is fast


def test_engines_are_timed_in_turns_and_the_quicker_is_faster():
    import time

    calls: list[str] = []

    def engine(name: str, seconds: float):
        return lambda: (calls.append(name), time.sleep(seconds))

    speeds = measure_speeds({"slow": engine("slow", 0.03), "quick": engine("quick", 0.005)}, texts=10)
    assert calls == ["slow", "quick", "slow", "quick"]
    assert speeds["quick"] > speeds["slow"] and speeds["slow"] <= 10 / 0.03


@pytest.fixture(scope="module")
def calibrated(embedder, tmp_path_factory):
    """A cache directory holding an int8 model calibrated by one bulk batch, with that batch and its vectors."""
    cache = tmp_path_factory.mktemp("cache")
    texts = bulk()
    first = sharing_embedder(embedder, batch_backend="openvino-int8", cache_dir=cache)
    vectors = first.embed(texts)
    assert first._openvino is not None and first._openvino.calibrated and first.int8_calibrated
    return cache, texts, vectors


def test_int8_is_kept_in_the_cache_and_reused_by_the_next_process(embedder, calibrated, tmp_path):
    cache, texts, vectors = calibrated
    assert len(list((cache / "openvino").glob("*-int8-ov*/model.xml"))) == 1
    assert not list((cache / "openvino").glob("*.tmp-*"))
    later = sharing_embedder(embedder, batch_backend="openvino-int8", cache_dir=cache)
    other_texts = bulk(BULK_TEXTS + 7)[::-1]  # another load: different first batch
    again = later.embed(other_texts)
    assert later._openvino is not None and not later._openvino.calibrated and not later.int8_calibrated
    order = {t: i for i, t in enumerate(other_texts)}
    same = np.array([again[order[t]] for t in texts])
    assert np.allclose(same, vectors, atol=1e-5)  # the same quantization: the same vectors for the same texts


def test_a_damaged_cached_int8_model_is_quantized_again(embedder, calibrated, tmp_path):
    import shutil

    shutil.copytree(calibrated[0], tmp_path / "cache")
    (saved,) = (tmp_path / "cache" / "openvino").glob("*-int8-ov*/model.xml")
    saved.write_text("<net>truncated")
    later = sharing_embedder(embedder, batch_backend="openvino-int8", cache_dir=tmp_path / "cache")
    later.embed(bulk())
    assert later._openvino is not None and later._openvino.calibrated
    assert saved.read_text().startswith("<?xml")  # replaced by the new one


def test_auto_times_int8_where_the_cpu_has_int8_dot_products(embedder, calibrated, monkeypatch, tmp_path):
    import shutil

    shutil.copytree(calibrated[0], tmp_path / "cache")
    monkeypatch.setattr(embedding, "cpu_has_fast_int8", lambda: True)
    auto = sharing_embedder(embedder, batch_backend="auto", cache_dir=tmp_path / "cache")
    auto.embed(calibrated[1])
    assert set(auto.batch_engine_speeds) == {"torch", "openvino", "openvino-int8"}
    assert not auto.int8_calibrated  # the cached int8 model was loaded, not quantized again
    assert auto.last_batch_engine == choose_batch_engine(auto.batch_engine_speeds)


def test_without_openvino_batches_fall_back_to_pytorch_or_fail_clearly(embedder, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    monkeypatch.setattr(embedding, "cpu_has_fast_int8", lambda: True)  # int8 would be tried first
    auto = sharing_embedder(embedder, batch_backend="auto")
    with caplog.at_level("INFO", logger="index.embedding.embedder"):
        assert auto.embed(bulk()).shape == (BULK_TEXTS, 384)
    assert auto.last_batch_engine == "torch"
    assert caplog.text.count("openvino is not installed") == 1  # said once, not once per OpenVINO engine
    required = sharing_embedder(embedder, batch_backend="openvino")
    with pytest.raises(ModelUnavailable, match="cannot embed batches with OpenVINO: openvino is not installed"):
        required.embed(TEXTS[:2])


def test_openvino_output_that_does_not_match_pytorch_is_not_used(embedder, monkeypatch, tmp_path):
    monkeypatch.setattr(batch_encoder, "MIN_COSINE", 1.01)  # no output can match: the load-time check must refuse
    monkeypatch.setattr(batch_encoder, "INT8_MIN_COSINE", 1.01)
    monkeypatch.setattr(embedding, "cpu_has_fast_int8", lambda: True)  # int8 is tried, and refused, too
    auto = sharing_embedder(embedder, batch_backend="auto", cache_dir=tmp_path)
    auto.embed(bulk())
    assert auto.last_batch_engine == "torch"
    assert not list((tmp_path / "openvino").glob("*-int8-ov*"))  # a refused model is not kept
    required = sharing_embedder(embedder, batch_backend="openvino")
    with pytest.raises(ModelUnavailable, match="OpenVINO output differs from PyTorch"):
        required.embed(TEXTS[:2])


def test_without_nncf_auto_times_openvino_in_the_model_precision(embedder, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)
    monkeypatch.setattr(embedding, "cpu_has_fast_int8", lambda: True)
    auto = sharing_embedder(embedder, batch_backend="auto", cache_dir=tmp_path)
    auto.embed(bulk())
    assert set(auto.batch_engine_speeds) == {"torch", "openvino"}
    assert auto.last_batch_engine == choose_batch_engine(auto.batch_engine_speeds)
    int8 = sharing_embedder(embedder, batch_backend="openvino-int8", cache_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match="nncf is not installed"):
        int8.embed(TEXTS)


def test_the_batch_backend_setting_reaches_the_embedder(monkeypatch):
    from service.answering.qa import build_embedder
    from service.settings import Settings

    assert build_embedder(Settings()).batch_backend == "auto"
    monkeypatch.setenv("NEWSROOM_QA_BATCH_BACKEND", "torch")
    assert build_embedder(Settings()).batch_backend == "torch"
    assert build_embedder(Settings(batch_backend="openvino-int8")).batch_backend == "openvino-int8"


def test_int8_when_asked_for_is_calibrated_on_the_first_batch_whatever_its_size(embedder, tmp_path):
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 8)]
    int8 = sharing_embedder(embedder, batch_backend="openvino-int8", batch_size=4, cache_dir=tmp_path)
    vectors = int8.embed(texts)  # the first batch: its texts are the calibration set
    assert int8.last_batch_engine == "openvino-int8"
    reference = sharing_embedder(embedder, precision="fp32", batch_backend="torch")
    cosine = (vectors * reference.embed(texts)).sum(axis=1)
    assert cosine.min() > batch_encoder.INT8_MIN_COSINE and cosine.mean() > 0.99
    assert cosine.min() < 0.9999


def test_two_processes_calibrating_at_once_quantize_once(embedder, tmp_path):
    """Two Dask workers on one machine: the first to take the cache's lock quantizes, the other loads its model."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 8)]
    workers = [sharing_embedder(embedder, batch_backend="openvino-int8", batch_size=4, cache_dir=tmp_path)
               for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        vectors = list(pool.map(lambda w: w.embed(texts), workers))
    assert sorted(w.int8_calibrated for w in workers) == [False, True]
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)  # one quantization: the same vectors


def test_deferred_embedder_embeds_queries_from_the_checked_export_without_the_torch_model(embedder):
    """``ask``'s one-shot service: the ONNX export the session's embedder checked (and recorded) is read back and
    checked against PyTorch's recorded vectors; the PyTorch model is loaded only for a batch."""
    assert embedder.query_engine == "onnx"
    deferred = Embedder(cache_dir=embedder.cache_dir, defer_torch=True)
    deferred.warm_up()
    assert deferred.model is None and deferred.query_engine == "onnx" and deferred.dimension == embedder.dimension
    question = "Who doubted the crematorium claim?"
    assert float(deferred.embed_query(question) @ embedder.embed_query(question)) > 0.9999
    vectors = deferred.embed(["The river rose two metres overnight."])
    assert deferred.model is not None and vectors.shape == (1, embedder.dimension)


def test_deferred_embedder_without_a_checked_export_loads_the_model(embedder, tmp_path):
    deferred = Embedder(cache_dir=tmp_path, defer_torch=True)  # an empty cache: nothing checked yet
    deferred.warm_up()
    assert deferred.model is not None and deferred.query_engine == "onnx"
    assert next((tmp_path / "onnx").glob("*.onnx.check.json")).is_file()  # recorded for the next start
