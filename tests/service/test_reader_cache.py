"""The reader's converted OpenVINO model with PyTorch's logits recorded beside it: a later start checks the cached
model against the record without loading the PyTorch model, and anything damaged or mismatching falls back to the
full path (load PyTorch, check, convert again if need be)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from index.embedding.embedder import bundled_model_path
from service.answering.readers.openvino_logits import REFERENCE_FILE
from service.answering.readers.span_model import RecordedTokenizer, SpanModel, _tokenization, _tokenizer_settings
from tests.tiny_models import save_tiny_qa_model

CONTEXT = ("The Marren Water Trust, whose analyst Tomas Lindqvist has studied the estuary for a decade, doubted the "
           "pipeline claim. The harbour authority said the pipeline carried rainwater.")
QUESTIONS = ["Who doubted the pipeline claim?", "What did the harbour authority say about the pipeline?"]
LONG = ("The harbour authority said on Tuesday that the grain shipment had left the port before the strike began. "
        "Geoffrey Mock, a specialist at Amnesty, said the satellite photographs were not conclusive. "
        "The ministry would pay the dockers' overtime, a spokeswoman said, but not before the audit in March. "
        "Paulo Pinheiro, the chairman of the tribunal, said he had no information concerning the crematorium. "
        "Residents doubted the official figures, which put the cost of the new rail line at 2.4 billion euros.")
CONTEXTS = [CONTEXT, LONG, "Lindqvist doubted it."]  # one window, several, one

pytest.importorskip("openvino")
TINY: list[Path] = []  # where the module's tiny model is


@pytest.fixture(scope="module")
def tiny_qa_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised one-layer BERT QA model with MiniLM's vocabulary: plumbing only, no quality."""
    path = save_tiny_qa_model(tmp_path_factory.mktemp("tiny") / "tiny-qa")
    TINY[:] = [path]
    return path


def other_model(path: Path) -> Path:
    """A model of the same shape and vocabulary as ``tiny_qa_model``, other weights."""
    from transformers import AutoTokenizer, BertForQuestionAnswering

    torch.manual_seed(1)
    tiny = BertForQuestionAnswering.from_pretrained(str(TINY[0]))
    for parameter in tiny.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    tiny.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(TINY[0])).save_pretrained(path)
    return path


def reader(model: Path, cache: Path | None, precision: str = "fp32", backend: str = "openvino") -> SpanModel:
    return SpanModel(model, max_length=64, stride=16, precision=precision, backend=backend,  # type: ignore[arg-type]
                     cache_dir=cache)


def spans(model: SpanModel) -> list[list[tuple[int, int, int]]]:
    return [[(p.context_index, p.start, p.end) for p in model.predict(q, CONTEXTS, top_n=5)] for q in QUESTIONS]


def record_of(cache: Path) -> Path:
    (path,) = (cache / "openvino").glob(f"reader-*/{REFERENCE_FILE}")
    return path


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_recorded_reference_lets_the_reader_start_without_pytorch(tiny_qa_model: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     precision: str) -> None:
    first = reader(tiny_qa_model, tmp_path, precision)
    assert first.pytorch_loaded and first._openvino is not None and first._openvino.checked_against == "pytorch"
    record = json.loads(record_of(tmp_path).read_text(encoding="utf-8"))
    assert set(record["versions"]) == {"torch", "transformers", "openvino", "tokenizers"} and record["model_key"]

    import transformers

    def no_pytorch_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PyTorch model was loaded")

    monkeypatch.setattr(transformers.AutoModelForQuestionAnswering, "from_pretrained", no_pytorch_model)
    later = reader(tiny_qa_model, tmp_path, precision)
    assert not later.pytorch_loaded and later.model is None and later.backend == "openvino"
    assert later._openvino is not None and later._openvino.checked_against == "record" and later._openvino.from_cache
    assert isinstance(later.tokenizer, RecordedTokenizer) and later.max_length == first.max_length
    monkeypatch.undo()

    assert spans(later) == spans(first)
    for q in QUESTIONS:  # the same model read the same windows: the same scores, too
        assert later.predict(q, CONTEXTS) == first.predict(q, CONTEXTS)
    if precision == "fp32":  # bf16 rounds differently in the two engines: on a random model, near-ties may swap
        assert spans(later) == spans(reader(tiny_qa_model, None, precision, backend="torch"))


def test_a_start_from_the_record_imports_neither_pytorch_nor_transformers(tiny_qa_model: Path, tmp_path: Path) -> None:
    reader(tiny_qa_model, tmp_path)  # converts and records
    code = ("import sys; from pathlib import Path; from service.answering.readers.span_model import SpanModel; "
            f"m = SpanModel(Path({str(tiny_qa_model)!r}), max_length=64, stride=16, precision='fp32', "
            f"backend='openvino', cache_dir=Path({str(tmp_path)!r})); "
            "p = m.predict('Who doubted the pipeline claim?', ['Lindqvist doubted it.'])[0]; "
            "print(m.pytorch_loaded, 'torch' in sys.modules, 'transformers' in sys.modules, p.start, p.end)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    want = reader(tiny_qa_model, None, backend="torch").predict("Who doubted the pipeline claim?",
                                                                ["Lindqvist doubted it."])[0]
    assert out.stdout.split() == ["False", "False", "False", str(want.start), str(want.end)]


def tamper_logits(record: dict[str, Any]) -> None:
    record["reference"][0][0][1] += 1.0


def tamper_nan(record: dict[str, Any]) -> None:
    record["reference"][1][1][2] = float("nan")


def tamper_versions(record: dict[str, Any]) -> None:
    record["versions"]["openvino"] = "0.0"


def tamper_tokenizer(record: dict[str, Any]) -> None:
    record["tokenizer"]["truncation_side"] = "left"


def tamper_shape(record: dict[str, Any]) -> None:
    record["reference"] = [record["reference"][0][:1], record["reference"][1][:1]]


@pytest.mark.parametrize("tamper", [tamper_logits, tamper_nan, tamper_versions, tamper_tokenizer, tamper_shape,
                                    None])
def test_a_tampered_record_falls_back_to_pytorch_and_is_recorded_again(
        tiny_qa_model: Path, tmp_path: Path, tamper: Callable[[dict[str, Any]], None] | None) -> None:
    first = reader(tiny_qa_model, tmp_path)
    path = record_of(tmp_path)
    good = path.read_text(encoding="utf-8")
    if tamper is None:
        path.write_text(good[: len(good) // 2], encoding="utf-8")  # cut short
    else:
        record = json.loads(good)
        tamper(record)
        path.write_text(json.dumps(record), encoding="utf-8")
    fallback = reader(tiny_qa_model, tmp_path)
    assert fallback.pytorch_loaded and fallback._openvino is not None
    assert fallback._openvino.checked_against == "pytorch" and fallback._openvino.from_cache  # the model was fine
    assert spans(fallback) == spans(first)
    assert json.loads(path.read_text(encoding="utf-8"))["reference"] == json.loads(good)["reference"]
    assert not reader(tiny_qa_model, tmp_path).pytorch_loaded  # recorded again: the next start uses it


@pytest.mark.parametrize("damage", ["another model's", "truncated graph", "removed"])
def test_a_damaged_cached_model_is_converted_again_not_used(tiny_qa_model: Path, tmp_path: Path, damage: str) -> None:
    want = spans(reader(tiny_qa_model, tmp_path))  # before the damage: OpenVINO maps the weights file it reads
    (kept,) = (tmp_path / "openvino").glob("reader-*")
    if damage == "another model's":  # reads and compiles, but computes other logits
        other = other_model(tmp_path / "other")
        reader(other, tmp_path / "other-cache")
        (converted,) = (tmp_path / "other-cache" / "openvino").glob("reader-*")
        for name in ("model.xml", "model.bin"):
            (kept / name).write_bytes((converted / name).read_bytes())
    elif damage == "truncated graph":
        (kept / "model.xml").write_text("<net>truncated")
    else:
        (kept / "model.xml").unlink()
    again = reader(tiny_qa_model, tmp_path)
    assert again.pytorch_loaded and again._openvino is not None and again._openvino.converted_by == "child"
    assert spans(again) == want == spans(reader(tiny_qa_model, None, backend="torch"))
    assert (kept / REFERENCE_FILE).is_file()  # recorded for the new conversion
    assert not reader(tiny_qa_model, tmp_path).pytorch_loaded


def test_recorded_tokenizer_cuts_windows_as_transformers_does() -> None:
    from transformers import AutoTokenizer

    from service.answering.readers.transformer import BUNDLED_READER

    for model_dir in (BUNDLED_READER, bundled_model_path()):
        hf = AutoTokenizer.from_pretrained(str(model_dir))
        settings = _tokenizer_settings(hf)
        assert settings is not None
        mine = RecordedTokenizer(model_dir / "tokenizer.json", settings)
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in hf.model_input_names]
        assert _tokenization(mine, names) == _tokenization(hf, names)
        for max_length, stride in ((64, 16), (384, 128)):
            kwargs: dict[str, Any] = {"truncation": "only_second", "max_length": max_length, "stride": stride,
                      "return_overflowing_tokens": True, "return_offsets_mapping": True, "padding": True,
                      "return_tensors": "np", "pad_to_multiple_of": 32}
            questions = ["Who doubted it?"] * len(CONTEXTS)
            want, got = hf(questions, CONTEXTS, **kwargs), mine(questions, CONTEXTS, **kwargs)
            for key in (*names, "offset_mapping", "overflow_to_sample_mapping"):
                assert np.array_equal(want[key], got[key]), key
            assert [want.sequence_ids(w) for w in range(len(want["input_ids"]))] == \
                [got.sequence_ids(w) for w in range(len(got["input_ids"]))]
