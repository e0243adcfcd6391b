"""Span extraction with any Hugging Face extractive-QA model: overlapping windows, exact character offsets.

Both the project's own trained reader and any hub model (``deepset/roberta-base-squad2``, a newsroom's own) run
through this one class, so windowing, offset mapping and the no-answer score behave the same for every model.
The no-answer score is the [CLS] start+end logit (SQuAD 2.0 convention); the answer's margin over it is what
the calibrator turns into a probability.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from index.embedding.embedder import PAD_TO_MULTIPLE, Precision, resolve_precision
from index.errors import ModelUnavailable
from service.answering.readers.openvino_logits import (
    OpenVinoSpanLogits,
    ReaderEngineUnavailable,
    cached_model_dir,
    probe_inputs,
    read_reference,
    write_reference,
)

if TYPE_CHECKING:
    import torch

__all__ = ["PAD_TO_MULTIPLE", "ReaderBackend", "SpanModel", "SpanPrediction", "hold_in_bf16"]

logger = logging.getLogger(__name__)
ReaderBackend = Literal["auto", "torch", "openvino"]

# Windows are padded to a multiple of PAD_TO_MULTIPLE tokens, the embedder's: oneDNN keeps kernels for every input
# shape it meets; padded only to the longest window, the service grew from 588 to 1,014 MB of its own memory over
# 200 questions (100k chunks). Padded to 32: 697 MB, and no slower (it meets shapes it has compiled already).


@dataclass(frozen=True)
class SpanPrediction:
    """A candidate answer in one context: ``context[start:end]``, its score and the window's no-answer score."""

    context_index: int
    start: int
    end: int
    score: float  # start logit + end logit
    null_score: float  # [CLS] start + end logit of the window the span came from

    @property
    def margin(self) -> float:
        """How much the model prefers this span to "no answer here"."""
        return self.score - self.null_score


class SpanModel:
    """Loads a question-answering model from a local path or hub id and finds answer spans in texts.

    Usage::

        model = SpanModel("service/answering/readers/weights/minilm-newsroom-reader")
        best = model.predict("Who doubted the claim?", ["... Mock doubted it ..."])[0]
    """

    def __init__(self, name_or_path: str | Path, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 30,
                 precision: Precision = "auto", threads: int | None = None, batch_size: int = 16,
                 rank_by: Literal["margin", "score"] = "score", backend: ReaderBackend = "torch",
                 cache_dir: Path | None = None) -> None:
        """:param backend: what runs the forward pass: ``torch``; ``openvino`` (``OpenVinoSpanLogits``: faster on
            the CPUs measured, see its docstring); ``auto``, OpenVINO where it loads and matches PyTorch, else PyTorch.
        :param cache_dir: where OpenVINO keeps the converted model of a local model directory (None: not kept).
            Where it holds one with PyTorch's logits recorded beside it (``openvino_logits.read_reference``), the
            converted model is checked against those and the PyTorch model is not loaded at all (nor transformers'
            model code, nor PyTorch imported for it): ``pytorch_loaded`` is then False.
        """
        self.name = str(name_or_path)
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.bf16 = resolve_precision(precision) == "bf16"
        self.rank_by = rank_by
        self.model: Any = None
        self._openvino: OpenVinoSpanLogits | None = None
        #: True if this start loaded the PyTorch model; False if OpenVINO was checked against recorded logits
        self.pytorch_loaded = False
        model_dir = Path(name_or_path)
        cached = cached_model_dir(model_dir, cache_dir) if backend != "torch" and cache_dir is not None else None
        if cached is not None:
            try:
                self._from_reference(model_dir, cached, max_length, threads)
            except ReaderEngineUnavailable as exc:
                logger.info("the reader's OpenVINO model is checked against PyTorch at this start (%s)", exc)
        if self._openvino is None:
            self._load_pytorch(name_or_path, max_length, threads, backend, cached)
        self.backend = "openvino" if self._openvino is not None else "torch"

    def _load_pytorch(self, name_or_path: str | Path, max_length: int, threads: int | None, backend: ReaderBackend,
                      cached: Path | None) -> None:
        """Load the PyTorch model; on OpenVINO (``backend`` not ``torch``), convert it or check the cached model
        against it, and record its logits beside a cached one for the next start."""
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(name_or_path))
            self.model = AutoModelForQuestionAnswering.from_pretrained(str(name_or_path), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load the reader model {name_or_path!r}: {exc}. Give a local directory holding a "
                "question-answering model, or a hub id on a machine with internet access.") from exc
        self.pytorch_loaded = True
        self.model.eval()
        self.max_length = min(max_length, int(getattr(self.tokenizer, "model_max_length", max_length) or max_length))
        if threads:
            torch.set_num_threads(threads)
        self._names: list[str] = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                                  if n in self.tokenizer.model_input_names]
        if backend != "torch":  # converted from the fp32 weights, before they are narrowed for PyTorch below
            try:
                self._openvino = OpenVinoSpanLogits(self.model, self.tokenizer, self._names, self.bf16,
                                                    threads or torch.get_num_threads(), cached,
                                                    model_dir=Path(name_or_path) if cached is not None else None)
                self.model = None  # OpenVINO holds the weights it runs: PyTorch's copy would be 45-90 MB unused
            except ReaderEngineUnavailable as exc:
                self._not_openvino(backend, exc)
        if self._openvino is not None and cached is not None:
            self._record_reference(Path(name_or_path), cached, self._openvino)
        if self.bf16 and self.model is not None:
            hold_in_bf16(self.model)

    def _from_reference(self, model_dir: Path, cached: Path, max_length: int, threads: int | None) -> None:
        """Run the model converted into ``cached`` at an earlier start, checked against the PyTorch logits recorded
        then, with the tokenizer read by ``tokenizers`` alone.

        :raises ReaderEngineUnavailable: if there is no usable record, the tokenizer does not reproduce the recorded
            windows, or the converted model's logits differ from the recorded ones.
        """
        record = read_reference(cached, model_dir)
        try:
            tokenizer = RecordedTokenizer(model_dir / "tokenizer.json", record["tokenizer"])
            names = [str(n) for n in record["input_names"]]
            if _tokenization(tokenizer, names) != record["tokenization"]:
                raise ReaderEngineUnavailable("the tokenizer does not reproduce the recorded windows")
            reference = (np.asarray(record["reference"][0], dtype=np.float32),
                         np.asarray(record["reference"][1], dtype=np.float32))
        except ReaderEngineUnavailable:
            raise
        except Exception as exc:  # a damaged record or tokenizer file (tokenizers raises its own types)
            raise ReaderEngineUnavailable(f"the recorded reference cannot be used: {type(exc).__name__}: {exc}") \
                from exc
        self._openvino = OpenVinoSpanLogits.from_reference(cached, probe_inputs(tokenizer), names, self.bf16,
                                                           threads or _default_threads(), reference)
        self.tokenizer, self._names = tokenizer, names
        self.max_length = min(max_length, tokenizer.model_max_length or max_length)
        logger.info("the reader runs the OpenVINO model in %s, checked against recorded PyTorch logits", cached)

    def _record_reference(self, model_dir: Path, cached: Path, engine: OpenVinoSpanLogits) -> None:
        """Record PyTorch's logits on the probe windows beside the converted model, with the tokenizer's settings,
        for ``_from_reference`` at the next start; only where ``RecordedTokenizer`` reproduces this tokenizer."""
        settings = _tokenizer_settings(self.tokenizer)
        if settings is None or not (model_dir / "tokenizer.json").is_file():
            return
        tokenization = _tokenization(self.tokenizer, self._names)
        try:
            same = _tokenization(RecordedTokenizer(model_dir / "tokenizer.json", settings), self._names) == tokenization
        except Exception as exc:  # tokenizers raises its own types
            logger.info("the reader's tokenizer cannot be read by tokenizers alone (%s): no record kept", exc)
            return
        if not same:
            logger.info("tokenizers alone does not reproduce the reader's tokenizer: no record kept")
            return
        write_reference(cached, model_dir, {
            "input_names": self._names, "tokenizer": settings, "tokenization": tokenization,
            "reference": [engine.reference[0].tolist(), engine.reference[1].tolist()]})

    def _not_openvino(self, backend: ReaderBackend, exc: ReaderEngineUnavailable) -> None:
        if backend == "openvino":
            raise ModelUnavailable(f"cannot run the reader on OpenVINO: {exc}") from exc
        logger.info("the reader runs on PyTorch (%s)", exc)

    def predict(self, question: str, contexts: Sequence[str], top_n: int = 3) -> list[SpanPrediction]:
        """The ``top_n`` best spans over all contexts, best first (several windows of one context may contribute).

        Spans are ranked by their raw score (start + end logit), the usual rule; ``rank_by="margin"`` ranks by the
        margin over the span's own window's no-answer score instead. Judged on the tune splits: margin helped with
        the gold story given (NewsQA F1 42.7 against 41.0) but hurt end to end, where passages of several
        articles compete (F1 32.5 against 34.3, right article 66.7% against 70.6%), so raw scores are the default.
        """
        if not contexts:
            return []
        enc = self.tokenizer([question] * len(contexts), list(contexts), truncation="only_second",
                             max_length=self.max_length, stride=self.stride, return_overflowing_tokens=True,
                             return_offsets_mapping=True, padding=True, return_tensors="np",
                             pad_to_multiple_of=PAD_TO_MULTIPLE)
        window_context = enc.pop("overflow_to_sample_mapping").tolist()
        offsets = enc.pop("offset_mapping").tolist()
        starts, ends = self._logits(enc)
        predictions: list[SpanPrediction] = []
        for w in range(len(window_context)):
            seq = enc.sequence_ids(w)
            ctx_tokens = np.array([s == 1 for s in seq])
            predictions.extend(self._best_in_window(starts[w], ends[w], ctx_tokens, offsets[w], window_context[w],
                                                    top_n))
        if self.rank_by == "margin":
            predictions.sort(key=lambda p: p.margin, reverse=True)
        else:
            predictions.sort(key=lambda p: p.score, reverse=True)
        return _dedupe(predictions)[:top_n]

    def null_score(self, question: str, contexts: Sequence[str]) -> float:
        """The lowest window no-answer score (the window most open to an answer), for abstention decisions."""
        preds = self.predict(question, contexts, top_n=1)
        return preds[0].null_score if preds else float("inf")

    # --- internals -------------------------------------------------------------------------------------
    def _logits(self, enc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits of every window, shape (windows, tokens); padding positions get -1e4.

        Windows run in groups of one padded length (a multiple of ``PAD_TO_MULTIPLE``), not all padded to the
        longest: a question's passages make windows of 160-384 tokens, and one shared length spent ~45% of the
        tokens on padding (attention grows with the square of the length). OpenVINO runs each window as a request
        of its own, but at these padded lengths too: few shapes, so it compiles kernels for few.
        """
        inputs = {k: np.asarray(enc[k]) for k in self._names}
        n, width = inputs["input_ids"].shape
        step = PAD_TO_MULTIPLE or 1
        groups: dict[int, list[int]] = {}
        for i, length in enumerate(inputs["attention_mask"].sum(axis=1).tolist()):
            groups.setdefault(min(width, -(-int(length) // step) * step), []).append(i)
        starts = np.full((n, width), -1e4, dtype=np.float32)
        ends = np.full((n, width), -1e4, dtype=np.float32)
        if self._openvino is not None:
            self._openvino.run(inputs, list(groups.items()), starts, ends)
            return starts, ends
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for length, rows in groups.items():
                for i in range(0, len(rows), self.batch_size):
                    batch = rows[i:i + self.batch_size]
                    out = self.model(**{k: torch.from_numpy(v[batch, :length]) for k, v in inputs.items()})
                    starts[batch, :length] = out.start_logits.float().numpy()
                    ends[batch, :length] = out.end_logits.float().numpy()
        return starts, ends

    def _best_in_window(self, start: np.ndarray, end: np.ndarray, ctx: np.ndarray, offsets: list[list[int]],
                        context_index: int, top_n: int) -> list[SpanPrediction]:
        null = float(start[0] + end[0])
        s = np.where(ctx, start, -np.inf)
        e = np.where(ctx, end, -np.inf)
        k = min(20, int(ctx.sum()))
        if k == 0:
            return []
        top_s = np.argsort(-s)[:k]
        top_e = np.argsort(-e)[:k]
        found: list[SpanPrediction] = []
        for i in top_s:
            for j in top_e:
                if j < i or j - i + 1 > self.max_answer_tokens:
                    continue
                c0, c1 = offsets[i][0], offsets[j][1]
                if c1 <= c0:
                    continue
                found.append(SpanPrediction(context_index, c0, c1, float(s[i] + e[j]), null))
        found.sort(key=lambda p: p.score, reverse=True)
        return found[: top_n * 3]


def hold_in_bf16(model: torch.nn.Module) -> None:
    """Keep matrix weights in bf16, and vocabulary tables in a 16-bit type that holds their values exactly.

    Under bf16 autocast every matrix product casts its weights (and bias) to bf16 anyway, so the logits do not
    change. A table is narrowed only if that loses nothing (our reader is stored in fp16), and its rows are cast
    back to fp32 before the embeddings are summed, as before. Our reader: 90 MB of weights become 45 MB.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
        elif isinstance(module, torch.nn.Embedding) and module.weight.dtype == torch.float32:
            weight = module.weight.detach()
            for dtype in (torch.bfloat16, torch.float16):
                narrow = weight.to(dtype)
                if torch.equal(narrow.float(), weight):
                    module.weight = torch.nn.Parameter(narrow, requires_grad=False)
                    module.register_forward_hook(_to_fp32)
                    break


def _to_fp32(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def _dedupe(predictions: list[SpanPrediction]) -> list[SpanPrediction]:
    """Keep the best of spans that overlap in the same context (overlapping windows repeat them)."""
    kept: list[SpanPrediction] = []
    for p in predictions:
        if any(k.context_index == p.context_index and k.start < p.end and p.start < k.end for k in kept):
            continue
        kept.append(p)
    return kept


# --- the tokenizer without transformers -------------------------------------------------------------------------
class Windows(dict[str, np.ndarray]):
    """What ``RecordedTokenizer`` returns: the arrays by name, as transformers' ``BatchEncoding``, and each
    window's ``sequence_ids``."""

    def __init__(self, arrays: Mapping[str, np.ndarray], sequence_ids: list[list[int | None]]) -> None:
        super().__init__(arrays)
        self._sequence_ids = sequence_ids

    def sequence_ids(self, window: int) -> list[int | None]:
        return self._sequence_ids[window]


class RecordedTokenizer:
    """A model's fast tokenizer (``tokenizer.json``) run by ``tokenizers`` directly, with the settings transformers'
    tokenizer had when the reference was recorded: the calls ``SpanModel`` makes, without importing transformers.

    transformers' fast tokenizers set the same truncation and padding on this same object and read the same
    encodings back; ``_from_reference`` uses it only after it has reproduced the recorded windows exactly.
    """

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self.model_max_length = int(settings["model_max_length"])
        self.model_input_names = [str(n) for n in settings["model_input_names"]]
        self._padding = {"direction": str(settings["padding_side"]), "pad_id": int(settings["pad_token_id"]),
                         "pad_type_id": int(settings["pad_token_type_id"]), "pad_token": str(settings["pad_token"])}
        self._truncation_side = str(settings["truncation_side"])
        self._lock = threading.Lock()  # settings and encoding go together: the server tokenizes on several threads

    def __call__(self, questions: Sequence[str], contexts: Sequence[str], *,
                 truncation: bool | Literal["only_second"] = False, max_length: int | None = None, stride: int = 0,
                 return_overflowing_tokens: bool = False, return_offsets_mapping: bool = False,
                 padding: bool = False, return_tensors: Literal["np"] | None = None,
                 pad_to_multiple_of: int | None = None) -> Windows:
        if truncation not in (False, "only_second") or (truncation and max_length is None) \
                or return_tensors not in (None, "np"):
            raise ValueError("RecordedTokenizer: only question/context pairs, truncated 'only_second', as numpy")
        with self._lock:
            tok = self._tokenizer
            if truncation:
                tok.enable_truncation(int(max_length or 0), stride=stride, strategy="only_second",
                                      direction=self._truncation_side)
            else:
                tok.no_truncation()
            if padding:
                tok.enable_padding(**self._padding, pad_to_multiple_of=pad_to_multiple_of)
            else:
                tok.no_padding()
            encodings = tok.encode_batch(list(zip(questions, contexts, strict=True)))
        windows, mapping = [], []
        for i, encoding in enumerate(encodings):
            for window in [encoding, *(encoding.overflowing if return_overflowing_tokens else [])]:
                windows.append(window)
                mapping.append(i)
        arrays = {"input_ids": np.array([w.ids for w in windows], dtype=np.int64),
                  "token_type_ids": np.array([w.type_ids for w in windows], dtype=np.int64),
                  "attention_mask": np.array([w.attention_mask for w in windows], dtype=np.int64)}
        if return_offsets_mapping:
            arrays["offset_mapping"] = np.array([w.offsets for w in windows], dtype=np.int64)
        if return_overflowing_tokens:
            arrays["overflow_to_sample_mapping"] = np.array(mapping, dtype=np.int64)
        return Windows(arrays, [list(w.sequence_ids) for w in windows])


# Texts whose windows the record keeps (as transformers tokenized them) and ``RecordedTokenizer`` must reproduce:
# the probe's, and long, accented and punctuated ones cut into overlapping windows as ``predict`` cuts them.
_TOKENIZATION_QUESTION = "Who said “the crematorium” wasn't there — and when?"
_TOKENIZATION_CONTEXTS = [
    "The harbour authority said on Tuesday that the grain shipment had left the port before the strike began. " * 3,
    "Paulo Pinheiro, the chairman of the UN tribunal, said: “I don\u2019t have any information concerning this.” "
    "Café owner Łukasz Nowak paid €5,000 (about $5,400) on 12/03/2017; naïve façades — déjà vu.\tTabs\nand lines.",
    "It left on Monday.",
]


def _tokenization(tokenizer: Any, names: Sequence[str]) -> dict[str, Any]:
    """How ``tokenizer`` cuts fixed texts into windows, as JSON values: compared between transformers' tokenizer
    (recorded) and ``RecordedTokenizer`` (at a start that uses the record)."""
    probe = probe_inputs(tokenizer)
    enc = tokenizer([_TOKENIZATION_QUESTION] * len(_TOKENIZATION_CONTEXTS), _TOKENIZATION_CONTEXTS,
                    truncation="only_second", max_length=64, stride=16, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding=True, return_tensors="np", pad_to_multiple_of=PAD_TO_MULTIPLE)
    keys = [*dict.fromkeys([*names, "attention_mask"]), "offset_mapping", "overflow_to_sample_mapping"]
    result = {"probe": {n: np.asarray(probe[n]).tolist() for n in dict.fromkeys([*names, "attention_mask"])},
              "windows": {k: np.asarray(enc[k]).tolist() for k in keys},
              "sequence_ids": [list(enc.sequence_ids(w)) for w in range(len(enc["input_ids"]))]}
    return json.loads(json.dumps(result))  # as read back from the record


def _tokenizer_settings(tokenizer: Any) -> dict[str, Any] | None:
    """What ``RecordedTokenizer`` needs of transformers' tokenizer; None for one it cannot stand in for."""
    if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token_id is None:
        return None
    return {"model_max_length": int(tokenizer.model_max_length), "model_input_names": list(tokenizer.model_input_names),
            "pad_token_id": int(tokenizer.pad_token_id), "pad_token_type_id": int(tokenizer.pad_token_type_id),
            "pad_token": str(tokenizer.pad_token), "padding_side": str(tokenizer.padding_side),
            "truncation_side": str(tokenizer.truncation_side)}


def _default_threads() -> int:
    """PyTorch's thread count where it is loaded already (what the PyTorch path uses), else this process's CPUs."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
