"""Span extraction with any Hugging Face extractive-QA model: overlapping windows, exact character offsets.

Both the project's own trained reader and any hub model (``deepset/roberta-base-squad2``, a newsroom's own) run
through this one class, so windowing, offset mapping and the no-answer score behave the same for every model.
The no-answer score is the [CLS] start+end logit (SQuAD 2.0 convention); the answer's margin over it is what
the calibrator turns into a probability.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from index.embedding import PAD_TO_MULTIPLE, Precision, resolve_precision
from index.errors import ModelUnavailable
from service.readers.openvino_logits import OpenVinoSpanLogits, ReaderEngineUnavailable, cached_model_dir

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

        model = SpanModel("service/readers/weights/minilm-newsroom-reader")
        best = model.predict("Who doubted the claim?", ["... Mock doubted it ..."])[0]
    """

    def __init__(self, name_or_path: str | Path, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 30,
                 precision: Precision = "auto", threads: int | None = None, batch_size: int = 16,
                 rank_by: Literal["margin", "score"] = "score", backend: ReaderBackend = "torch",
                 cache_dir: Path | None = None) -> None:
        """:param backend: what runs the forward pass: ``torch``; ``openvino`` (``OpenVinoSpanLogits``: faster on
            the CPUs measured, see its docstring); ``auto``, OpenVINO where it loads and matches PyTorch, else PyTorch.
        :param cache_dir: where OpenVINO keeps the converted model of a local model directory (None: not kept).
        """
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
            self.model = AutoModelForQuestionAnswering.from_pretrained(str(name_or_path), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load the reader model {name_or_path!r}: {exc}. Give a local directory holding a "
                "question-answering model, or a hub id on a machine with internet access.") from exc
        self.model.eval()
        self.name = str(name_or_path)
        self.max_length = min(max_length, int(getattr(self.tokenizer, "model_max_length", max_length) or max_length))
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)
        self.bf16 = resolve_precision(precision) == "bf16"
        self.rank_by = rank_by
        self._names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                       if n in self.tokenizer.model_input_names]
        self._openvino: OpenVinoSpanLogits | None = None
        if backend != "torch":  # converted from the fp32 weights, before they are narrowed for PyTorch below
            try:
                cached = cached_model_dir(Path(name_or_path), cache_dir) if cache_dir is not None else None
                self._openvino = OpenVinoSpanLogits(self.model, self.tokenizer, self._names, self.bf16,
                                                    threads or torch.get_num_threads(), cached,
                                                    model_dir=Path(name_or_path) if cached is not None else None)
                self.model = None  # OpenVINO holds the weights it runs: PyTorch's copy would be 45-90 MB unused
            except ReaderEngineUnavailable as exc:
                self._not_openvino(backend, exc)
        if self.bf16 and self.model is not None:
            hold_in_bf16(self.model)
        self.backend = "openvino" if self._openvino is not None else "torch"

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
                             return_offsets_mapping=True, padding=True, return_tensors="pt",
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
        inputs = {k: enc[k] for k in self._names}
        n, width = inputs["input_ids"].shape
        step = PAD_TO_MULTIPLE or 1
        groups: dict[int, list[int]] = {}
        for i, length in enumerate(inputs["attention_mask"].sum(dim=1).tolist()):
            groups.setdefault(min(width, -(-int(length) // step) * step), []).append(i)
        starts = np.full((n, width), -1e4, dtype=np.float32)
        ends = np.full((n, width), -1e4, dtype=np.float32)
        if self._openvino is not None:
            self._openvino.run({k: v.numpy() for k, v in inputs.items()}, list(groups.items()), starts, ends)
            return starts, ends
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for length, rows in groups.items():
                for i in range(0, len(rows), self.batch_size):
                    batch = rows[i:i + self.batch_size]
                    out = self.model(**{k: v[batch, :length] for k, v in inputs.items()})
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
