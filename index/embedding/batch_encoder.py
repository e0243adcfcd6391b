"""Bulk embedding through OpenVINO: the same model, about 1.4x faster than PyTorch's bf16 on an AVX-512 BF16 CPU
(about 2x quantized to int8), run as small requests on parallel streams (``REQUEST_BATCH``).

Half of PyTorch's bf16 forward pass here is outside the matrix products, a third of it in its CPU flash-attention
kernel, which is slow at MiniLM's 32-wide heads (``benchmarks/roofline.py``); OpenVINO fuses attention and the
element-wise work. Measured, 384 BBC chunks, 4 interleaved rounds in one process: naive fp32 36.0 chunks/s,
PyTorch bf16 88.6 (2.46x), OpenVINO bf16 121.7 (3.38x), cosine to fp32 >= 0.99996 for both.

The price is memory: a process that embedded batches this way held ~450 MB more (1,339-1,366 MB against 884 MB
after 200 ingestion calls of 1-40 texts: OpenVINO's libraries, its compiled model and buffers beside the idle
PyTorch model), so by default (``batch_backend="auto"``) only bulk batches load it; a service that answers and
takes small additions never loads this engine (the reader may run on OpenVINO:
``service.answering.readers.openvino_logits``).

It runs the graph the ONNX query encoder exported (one export per model, in the cache directory). Like that
encoder it checks itself at load against PyTorch on padded batches; below 0.9999 cosine (0.98 for int8, checked
on its calibration texts) it is not used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from index.embedding.openvino_common import run_in_flight, save_model
from index.embedding.query_encoder import MIN_COSINE, OnnxQueryEncoder, pool_tokens

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["REQUEST_BATCH", "REQUEST_PAD_TO_MULTIPLE", "BatchEncoderUnavailable", "OpenVinoBatchEncoder",
           "OpenVinoMissing"]

logger = logging.getLogger(__name__)

# Texts of very different lengths in one padded batch, so the check covers the attention mask.
_PROBES = ["Who doubted the crematorium claim?", "Fire.",
           "The harbour authority said on Tuesday that the grain shipment had left the port before the strike began, "
           "and that the ministry would pay the dockers' overtime; the union said it had not been told. " * 3]


# int8 moves vectors more than bf16 (measured on 384 BBC chunks: cosine to fp32 mean 0.996, worst 0.990), so its
# load-time check has its own floor; the retrieval figures with it are in docs/retrieval-quality.md.
INT8_MIN_COSINE = 0.98
CALIBRATION_TEXTS = 300  # the first texts of the first batch that the int8 ranges are measured on
CALIBRATION_BATCH = 8
# Bulk batches run as small requests on parallel streams, one stream per thread, rather than as batches of 32 on
# all threads: the per-operator hand-offs between threads cost more than the small matrix products gain from
# sharing them. Measured on 745 news chunks (2-core AMD EPYC Zen 4, int8, 3 interleaved rounds, naive fp32 34.2
# chunks/s): 2 threads on batches of 32, 92-98 chunks/s; 2 streams on batches of 16, 118-124; of 8, 130-137; of 4,
# 135-144. Padding to 16 tokens instead of 32 added ~5% at 4 texts a request (less padding). At most 16 lengths
# times 4 batch sizes meet the compiled model; a server drops it after each write (RELEASE_AFTER_WRITE).
REQUEST_BATCH = 4
REQUEST_PAD_TO_MULTIPLE = 16


class BatchEncoderUnavailable(RuntimeError):
    """OpenVINO cannot embed with this model here; use PyTorch."""


class OpenVinoMissing(BatchEncoderUnavailable):
    """OpenVINO is not installed: no OpenVINO engine (int8 or not) is worth trying."""


def _calibration_lock(cached: Path | None) -> contextlib.AbstractContextManager[object]:
    """One process at a time loads or quantizes the int8 model kept at ``cached``: two Dask workers on one machine
    would otherwise both spend the ~50 s of calibration; the second waits, then loads the first one's model."""
    if cached is None:
        return contextlib.nullcontext()
    locks = cached.parent / "locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError:
        return contextlib.nullcontext()  # a read-only cache: nothing is shared through it (``save_model`` says so)
    if not os.access(locks, os.W_OK):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(str(locks / f"{cached.name}.lock"))


class OpenVinoBatchEncoder:
    """Embeds batches of texts with OpenVINO, pooled and normalised exactly as the sentence-transformers model."""

    def __init__(self, model: SentenceTransformer, onnx: OnnxQueryEncoder, precision: Literal["fp32", "bf16"],
                 threads: int, batch_size: int, pad_to_multiple: int, calibration: list[str] | None = None,
                 int8_cache: Path | None = None) -> None:
        """
        :param onnx: the query encoder whose exported graph (and tokenizer, pooling, window) is reused.
        :param precision: OpenVINO's inference precision; ``bf16`` needs a CPU with bf16 arithmetic.
        :param threads: one inference stream per thread.
        :param batch_size: texts per inference request (at most ``REQUEST_BATCH``).
        :param pad_to_multiple: batches are padded to a multiple of this many tokens (few shapes to compile).
        :param calibration: texts to quantize the model to int8 on (NNCF post-training quantization, the first
            ``CALIBRATION_TEXTS``); None keeps the weights as they are.
        :param int8_cache: a directory to keep the quantized model in. A later process loads it instead of
            calibrating again (its vectors then come from the same quantization), if it passes the check on that
            process's ``calibration`` texts; if not, it quantizes on them and replaces the cached one.
        """
        try:
            import openvino as ov
        except ImportError as exc:
            raise OpenVinoMissing("openvino is not installed") from exc
        self.onnx, self.batch_size, self.pad_to_multiple = onnx, min(batch_size, REQUEST_BATCH), pad_to_multiple
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads, "INFERENCE_NUM_THREADS": threads}
        self.int8 = calibration is not None
        self.calibrated = False  # True when this process measured the int8 ranges (False: loaded from the cache)
        self._core, self._config = ov.Core(), config
        cached = int8_cache / f"{onnx.path.stem}-int8-ov{ov.__version__.split('-')[0]}" if int8_cache else None
        check_texts = calibration[:64] if calibration is not None else _PROBES
        with _calibration_lock(cached if calibration is not None else None):
            self._load(model, calibration, cached, check_texts)

    def _load(self, model: SentenceTransformer, calibration: list[str] | None, cached: Path | None,
              check_texts: list[str]) -> None:
        """The cached int8 model if it passes the check, else the exported graph, quantized when asked for."""
        onnx = self.onnx
        if calibration is not None and cached is not None and (cached / "model.xml").is_file():
            try:
                self.compiled: Any = self._compile(self._core.read_model(str(cached / "model.xml")))
                self._check(model, check_texts)
                logger.info("int8 embedding model loaded from %s", cached)
                return
            except Exception as exc:  # damaged, or calibrated on texts unlike these: quantize again on these
                logger.info("the cached int8 model %s is not used (%s); quantizing again", cached, exc)
        try:
            graph = self._core.read_model(str(onnx.path))
            self.input_names = [i.get_any_name() for i in graph.inputs]
            if calibration is not None:
                graph = self._quantize(graph, calibration[:CALIBRATION_TEXTS])
                self.calibrated = True
            self.compiled = self._compile(graph)
        except BatchEncoderUnavailable:
            raise
        except Exception as exc:  # OpenVINO raises its own types for unreadable graphs and unsupported devices
            raise BatchEncoderUnavailable(f"OpenVINO cannot compile {onnx.path}: {exc}") from exc
        self._check(model, check_texts)
        if self.calibrated and cached is not None:
            save_model(graph, cached)  # a read-only cache: this process still uses the model it quantized

    def _compile(self, graph: Any) -> Any:
        self.input_names = [i.get_any_name() for i in graph.inputs]
        compiled = self._core.compile_model(graph, "CPU", self._config)
        # Two requests a stream: one runs while this thread tokenizes and pools the other (1 a stream: 4.16x naive, 2:
        # 4.27x, in the measurement above).
        self.parallel_requests = 2 * max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        return compiled

    def _quantize(self, graph: Any, texts: list[str]) -> Any:
        """Static int8 (weights and activations, ranges measured on ``texts``): VNNI int8 products."""
        try:
            import nncf
        except ImportError as exc:
            raise BatchEncoderUnavailable("nncf is not installed (needed for int8)") from exc
        feeds = [{n: batch[n] for n in self.input_names}
                 for _, batch in self._batches(texts, CALIBRATION_BATCH)]
        logger.info("quantizing the embedding model to int8 on %d texts", len(texts))
        with contextlib.redirect_stdout(sys.stderr):  # NNCF draws its progress bars on stdout: keep it for output
            return nncf.quantize(graph, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                 subset_size=len(feeds))

    def _check(self, model: SentenceTransformer, texts: list[str]) -> None:
        reference = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        worst = float((reference * self.encode(texts)).sum(axis=1).min())
        if worst < (INT8_MIN_COSINE if self.int8 else MIN_COSINE):
            raise BatchEncoderUnavailable(f"OpenVINO output differs from PyTorch (cosine {worst:.5f})")

    def _batches(self, texts: list[str], batch_size: int | None = None
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Longest texts first, in batches padded to a multiple of ``pad_to_multiple`` tokens."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        size = batch_size or self.batch_size
        for first in range(0, len(order), size):
            rows = order[first:first + size]
            batch = self.onnx.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                        max_length=self.onnx.max_length, pad_to_multiple_of=self.pad_to_multiple,
                                        return_tensors="np")
            yield rows, {n: np.asarray(batch[n], dtype=np.int64) for n in batch}

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, shape (len(texts), dimension), in the order given (``texts`` not empty:
        ``Embedder.embed`` answers an empty list itself).

        Requests run on all streams at once (``run_in_flight``); this thread tokenizes the next texts and pools each
        request's output once it is done.
        """
        from tqdm.auto import tqdm

        if not texts:
            raise ValueError("no texts to embed")
        # Requests of their own per call: they are not shared between threads, and a call may come from any of them.
        requests = [self.compiled.create_infer_request() for _ in range(self.parallel_requests)]
        vectors: list[tuple[np.ndarray, np.ndarray]] = []
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show_progress) as bar:

            def pool(request: Any, tag: tuple[np.ndarray, np.ndarray]) -> None:
                rows, mask = tag
                tokens = np.asarray(request.get_output_tensor(0).data, dtype=np.float32)
                vectors.append((rows, pool_tokens(tokens, mask, self.onnx.pooling)))
                bar.update(len(rows))

            run_in_flight(requests, (({n: batch[n] for n in self.input_names}, (rows, batch["attention_mask"]))
                                     for rows, batch in self._batches(texts)), pool)
        out = np.zeros((len(texts), vectors[0][1].shape[1]), dtype=np.float32)
        for rows, pooled in vectors:
            out[rows] = pooled
        return out
