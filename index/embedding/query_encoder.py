"""Query embedding through ONNX Runtime: the same model, about 2x faster than PyTorch for one short question.

A search embeds one question of ~15 tokens; at that size PyTorch's per-operator overhead dominates (15 ms per
query on a 2-core AVX2 CPU, against 6.6 ms in ONNX Runtime with the same fp32 weights). Bulk ingestion stays on
PyTorch, where long batches make the two equal, or runs this same exported graph in OpenVINO
(``index/embedding/batch_encoder.py``, opt-in).

The model's transformer is exported once per model (``torch.onnx.export``) into a cache directory, written
atomically, and reused by every later start. The encoder checks itself against PyTorch at load: if any probe
text's cosine is below 0.9999, or the model is not "transformer + mean/CLS pooling", it is not used and the
caller falls back to PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.checksum import library_versions, model_files_key

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["OnnxQueryEncoder", "QueryEncoderUnavailable", "default_cache_dir", "pool_tokens"]

logger = logging.getLogger(__name__)

_PROBES = ["Who doubted the crematorium claim?", "budget deficit", "What did the minister say on Tuesday about the "
           "new rail line between the two cities, and who will pay for it?"]
MIN_COSINE = 0.9999


class QueryEncoderUnavailable(RuntimeError):
    """ONNX Runtime cannot serve this model here; use PyTorch."""


def pool_tokens(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Unit-length float32 sentence vectors from token embeddings (batch, tokens, dim), as sentence-transformers
    pools them: the [CLS] token, or the mean over the tokens the attention mask keeps."""
    if pooling == "cls":
        pooled = tokens[:, 0]
    else:
        keep = mask[..., None].astype(np.float32)
        pooled = (tokens * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1.0)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/newsroom-qa`` (``~/.cache/newsroom-qa``): derived files that can always be rebuilt."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsroom-qa"


# Weights are kept in a file beside the graph ("external data"), which ONNX Runtime maps instead of copying:
# the vocabulary table (47 MB of MiniLM's 90) then costs only the rows queries use. Measured: the session's own
# memory 93-119 MB with the weights inside the graph, 46 MB beside it; same latency.
CACHE_FORMAT = "external-data-1"


# Beside each exported graph, ``<name>.onnx.check.json``: the PyTorch model's vectors of the probe texts, recorded when
# the export passed its check, with what it takes to run the graph without the PyTorch model (``from_cache``).
CHECK_FORMAT = 1
_LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "tokenizers")


def _library_versions() -> dict[str, str]:
    return library_versions(_LIBRARIES)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's worker threads spin after each run, waiting for the next; a search's next step (FAISS, BM25,
    # or PostgreSQL in another process) then shares the cores with them. Measured on 2 cores, postgres backend at
    # 100k chunks: retrieval right after an embedding p50 61 ms with spinning, 49 ms without; the embedding itself
    # 5.6 -> 7.5 ms (its threads now wake up for each run).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_path(location: str, cache_dir: Path) -> Path:
    """Where the graph of the model at ``location`` is kept in ``cache_dir``."""
    return cache_dir / "onnx" / f"{model_files_key(location, CACHE_FORMAT)}.onnx"


class OnnxQueryEncoder:
    """Embeds single queries with ONNX Runtime, pooled and normalised exactly as the sentence-transformers model.

    ``OnnxQueryEncoder(model, ...)`` exports (or reads) the graph and checks it against the loaded PyTorch model;
    ``OnnxQueryEncoder.from_cache(location, ...)`` reads a graph that passed that check at an earlier start and
    checks it against the PyTorch vectors recorded then, without loading PyTorch's model (a one-shot ``ask``).
    """

    dimension: int

    def __init__(self, model: SentenceTransformer, location: str, cache_dir: Path, threads: int) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise QueryEncoderUnavailable("onnxruntime is not installed") from exc
        modules = list(model)
        pooling = getattr(modules[1], "pooling_mode", None) if len(modules) > 1 else None
        if len(modules) < 2 or type(modules[0]).__name__ != "Transformer" or pooling not in {"mean", "cls"}:
            raise QueryEncoderUnavailable("only transformer + mean/CLS pooling models are exported")
        self.pooling = pooling
        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length or 512)
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                            if n in self.tokenizer.model_input_names]
        path = export_path(location, cache_dir)
        self.path = path  # the exported graph, which the OpenVINO batch encoder runs too
        if path.is_file():
            try:
                self.session = _session(path, threads)
            except Exception:  # a damaged cache file (ONNX Runtime raises its own types): export it again
                logger.warning("the cached ONNX model %s cannot be read; exporting it again", path)
                path.unlink()
        if not path.is_file():
            self._export(model, path)
            self.session = _session(path, threads)
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(getter() or 0)  # 0: unknown, and then ``from_cache`` does not use the record
        self._record(self._check(model))

    @classmethod
    def from_cache(cls, location: str, cache_dir: Path, threads: int) -> OnnxQueryEncoder:
        """The graph exported and checked at an earlier start, checked again against the PyTorch vectors recorded
        then (same probe texts, cosine >= ``MIN_COSINE``), without loading the PyTorch model.

        :raises QueryEncoderUnavailable: when there is no such graph, it was recorded with other library versions,
            or its vectors differ now; the caller loads the PyTorch model and checks it as at a first start.
        """
        path = export_path(location, cache_dir)
        check = path.with_name(path.name + ".check.json")
        try:
            record = json.loads(check.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise QueryEncoderUnavailable(f"no checked export in the cache ({type(exc).__name__})") from exc
        if not isinstance(record, dict) or record.get("format") != CHECK_FORMAT or not record.get("dimension") \
                or not path.is_file():
            raise QueryEncoderUnavailable("the cached export's check record is missing or of another format")
        if record.get("versions") != _library_versions():
            raise QueryEncoderUnavailable("the cached export was checked with other library versions")
        try:
            import onnxruntime  # noqa: F401
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise QueryEncoderUnavailable(f"{exc.name} is not installed") from exc
        self = cls.__new__(cls)
        try:
            self.pooling, self.max_length = str(record["pooling"]), int(record["max_length"])
            self.input_names, self.dimension = list(record["input_names"]), int(record["dimension"])
            reference = np.asarray(record["reference"], dtype=np.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            self.path, self.session = path, _session(path, threads)
            mine = np.stack([self.encode(p) for p in record["probes"]])
        except Exception as exc:  # a damaged record or graph (ONNX Runtime and tokenizers raise their own types)
            raise QueryEncoderUnavailable(f"the cached export cannot be used: {type(exc).__name__}: {exc}") from exc
        worst = float((reference * mine).sum(axis=1).min()) if reference.shape == mine.shape else -1.0
        if worst < MIN_COSINE:
            raise QueryEncoderUnavailable(f"the cached export differs from PyTorch's recorded vectors "
                                          f"(cosine {worst:.5f})")
        return self

    def _record(self, reference: np.ndarray) -> None:
        """Write the check record ``from_cache`` reads (atomically; a cache directory that cannot be written only
        means later starts check against the PyTorch model again)."""
        record = {"format": CHECK_FORMAT, "versions": _library_versions(), "pooling": self.pooling,
                  "max_length": self.max_length, "input_names": self.input_names, "dimension": self.dimension,
                  "probes": _PROBES, "reference": reference.tolist()}
        target = self.path.with_name(self.path.name + ".check.json")
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            logger.info("could not record the ONNX check in %s (%s)", target, exc)

    def _export(self, model: SentenceTransformer, path: Path) -> None:
        """Export the transformer (token embeddings out) with dynamic batch and length, its weights in
        ``<name>.onnx.data`` beside it; the graph file is renamed into place last, so it exists only when complete."""
        import onnx
        import torch
        from onnx.external_data_helper import convert_model_to_external_data

        transformer: Any = model[0].auto_model

        class TokenEmbeddings(torch.nn.Module):
            def __init__(self, inner: Any, names: list[str]) -> None:
                super().__init__()
                self.inner, self.names = inner, names

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return self.inner(**dict(zip(self.names, inputs, strict=True))).last_hidden_state

        example = self.tokenizer(_PROBES[:2], padding=True, return_tensors="pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        axes = {name: {0: "batch", 1: "tokens"} for name in [*self.input_names, "token_embeddings"]}
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about shapes; the result is checked in _check
                torch.onnx.export(TokenEmbeddings(transformer.eval(), self.input_names),
                                  tuple(example[n] for n in self.input_names), str(tmp), dynamo=False,
                                  input_names=self.input_names, output_names=["token_embeddings"],
                                  dynamic_axes=axes, opset_version=17)
            graph = onnx.load(str(tmp))
            convert_model_to_external_data(graph, all_tensors_to_one_file=True, location=f"{path.name}.data",
                                           size_threshold=1024)
            onnx.save(graph, str(tmp))  # writes <name>.data beside it, then the graph that names it
            os.replace(tmp, path)
        except Exception as exc:  # any exporter failure means: stay on PyTorch
            tmp.unlink(missing_ok=True)
            raise QueryEncoderUnavailable(f"ONNX export failed: {exc}") from exc
        logger.info("exported the embedding model to %s", path)

    def _check(self, model: SentenceTransformer) -> np.ndarray:
        """PyTorch's vectors of the probe texts, once ONNX Runtime's match them.

        :raises QueryEncoderUnavailable: if any probe's cosine is below ``MIN_COSINE``."""
        reference = np.asarray(model.encode(_PROBES, normalize_embeddings=True, convert_to_numpy=True),
                               dtype=np.float32)
        mine = np.stack([self.encode(p) for p in _PROBES])
        worst = float((reference * mine).sum(axis=1).min())
        if worst < MIN_COSINE:
            raise QueryEncoderUnavailable(f"ONNX output differs from PyTorch (cosine {worst:.5f})")
        return reference

    def encode(self, text: str) -> np.ndarray:
        """One unit-length float32 vector for ``text`` (truncated to the model's window)."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors for a few short texts in one run (padded to the longest)."""
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        feeds = {n: batch[n].astype(np.int64) for n in self.input_names}
        tokens = self.session.run(None, feeds)[0]
        return pool_tokens(tokens, batch["attention_mask"], self.pooling)
