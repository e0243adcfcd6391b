"""The reader's forward pass on OpenVINO: one window a request, on parallel streams (one per thread).

A question's passages make a handful of windows of 100-384 tokens. PyTorch runs them on both threads operator by
operator, and at these sizes the hand-offs between threads cost more than the products gain; OpenVINO runs each
window on a stream of its own, with its fused attention. Measured on 60 NewsQA questions against the 100k-chunk
benchmark archive (2-core AMD EPYC Zen 4, bf16, 3 interleaved rounds, reader only): PyTorch 97.5 ms a question (p50),
OpenVINO with one request per padded length 74.1 ms, one window a request on two streams 69.1 ms (1.41x); the best
span was the same on 59 of 60 questions (bf16 rounds differently in the two: on a probe window OpenVINO's logits were
within 0.07 of fp32's, PyTorch's bf16 within 0.05).

Beside a converted model in the cache, ``reference.json`` records the PyTorch model's fp32 logits on the probe windows
(``write_reference``), keyed by the model's files and the versions of the libraries on either side of the check. A
later start that finds it (``OpenVinoSpanLogits.from_reference``) checks the cached model against those logits instead
of loading the PyTorch model: a one-shot ``ask`` then imports neither PyTorch's model code nor loads its weights.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.checksum import library_versions, model_files_key
from index.embedding.openvino_common import run_in_flight, save_model

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_LOGIT_DIFFERENCE", "OpenVinoSpanLogits", "ReaderEngineUnavailable", "cached_model_dir",
           "read_reference", "write_reference"]

logger = logging.getLogger(__name__)


# Largest start/end logit difference from the PyTorch model's fp32 logits on the probe windows for the engine to be
# used. OpenVINO's bf16 differs by 0.07 on logits spanning -6..2 (PyTorch's own bf16 by 0.05); fp32 agrees to ~1e-5.
MAX_LOGIT_DIFFERENCE = {True: 0.25, False: 1e-3}
_PROBE_QUESTION = "When did the grain shipment leave the port?"
_PROBE_CONTEXTS = ["The harbour authority said on Tuesday that the grain shipment had left the port before the "
                   "strike began, and that the ministry would pay the dockers' overtime. " * 4, "It left on Monday."]

Job = tuple[int, list[int]]  # a padded length and the windows (rows) run at it


class ReaderEngineUnavailable(RuntimeError):
    """OpenVINO cannot run this reader here (not installed, conversion failed, or its logits differ)."""


def probe_inputs(tokenizer: Any) -> Any:
    """The windows every engine is checked on (and the converter traces with): a long one and a short one (numpy
    arrays: the check needs no PyTorch)."""
    return tokenizer([_PROBE_QUESTION] * len(_PROBE_CONTEXTS), _PROBE_CONTEXTS, padding=True, return_tensors="np")


def convert(model: torch.nn.Module, names: Sequence[str], probe: Any) -> Any:
    """The OpenVINO model of the fp32 PyTorch QA model, traced on ``probe``.

    :raises ReaderEngineUnavailable: if the converter fails (it raises its own types).
    """
    import openvino as ov
    import torch

    class StartEnd(torch.nn.Module):
        """The QA model with plain tensor inputs and outputs, as the converter wants it."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.names = inner, list(names)

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.inner(**dict(zip(self.names, inputs, strict=True)))
            return out.start_logits, out.end_logits

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes; the result is checked by the caller
            return ov.convert_model(StartEnd(model), example_input=tuple(torch.from_numpy(np.asarray(probe[n]))
                                                                         for n in names))
    except Exception as exc:
        raise ReaderEngineUnavailable(f"OpenVINO cannot convert the reader: {exc}") from exc


def convert_in_child(model_dir: Path, names: Sequence[str], target: Path) -> str | None:
    """Convert the model in ``model_dir`` into ``target`` in a child process; None on success, else why not.

    Converting holds the tracer's and converter's memory (~110 MB measured) for the rest of the process, where
    reading the converted model back costs ~15 MB: the child takes that memory with it when it exits.
    """
    command = [sys.executable, "-m", "service.answering.readers.openvino_convert", str(model_dir), str(target), *names]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0 or not (target / "model.xml").is_file():
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return None


class OpenVinoSpanLogits:
    """Start and end logits of reading windows, computed by OpenVINO from the same weights as the PyTorch model.

    Converted from the fp32 PyTorch model (about 1.5 s) and kept in the cache directory, where later starts read it
    (the conversion was most of the ~2 s this engine added to start-up). A local model is converted in a child
    process and read back from the cache, so the converter's memory leaves with the child (that start takes ~6 s
    longer: the child imports PyTorch and loads the model again). Whichever it runs, it is
    first checked against PyTorch's fp32 logits on probe windows, so a model converted wrongly, or a damaged cached
    one, is never used: a cached model that fails is converted again. ``from_reference`` checks a cached model
    against the fp32 logits recorded when it (or an earlier conversion of the same files) passed that check.
    """

    #: what the running model was checked against: "pytorch" (the model loaded at this start) or "record"
    checked_against = "pytorch"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, input_names: Sequence[str], bf16: bool,
                 threads: int, cached: Path | None = None, model_dir: Path | None = None) -> None:
        """:param model: the PyTorch model in fp32 (before ``hold_in_bf16``).
        :param cached: a directory to keep the converted model in (None: convert at every start).
        :param model_dir: the local directory ``model`` was loaded from, for a child process to convert it (None:
            converted in this process)."""
        import torch

        ov = _openvino()
        self.input_names, self.bf16 = list(input_names), bf16
        self.probe = probe_inputs(tokenizer)
        with torch.inference_mode():
            out = model.eval()(**{n: torch.from_numpy(np.asarray(self.probe[n])) for n in self.input_names})
        #: PyTorch's fp32 start and end logits on the probe windows, which the running model was checked against
        self.reference = reference = (out.start_logits.float().numpy(), out.end_logits.float().numpy())
        config = _config(bf16, threads)
        core = ov.Core()
        #: where the running model came from: "cache" (an earlier start's), "child" or "this process" (converted now)
        self.converted_by = "cache"
        if cached is not None and (cached / "model.xml").is_file():
            try:
                self._compile(core, core.read_model(str(cached / "model.xml")), config, reference)
                return
            except Exception as exc:  # damaged, or from another library version: convert again below
                logger.info("the cached reader model %s is not used (%s); converting again", cached, exc)
        if cached is not None and model_dir is not None:
            failed = convert_in_child(model_dir, self.input_names, cached)
            if failed is None:
                try:
                    self.converted_by = "child"
                    self._compile(core, core.read_model(str(cached / "model.xml")), config, reference)
                    logger.info("the reader was converted to OpenVINO in a child process and kept in %s", cached)
                    return
                except Exception as exc:
                    failed = str(exc)
            logger.info("converting the reader in a child process failed (%s); converting it here", failed)
        self.converted_by = "this process"
        graph = convert(model, self.input_names, self.probe)
        self._compile(core, graph, config, reference)
        if cached is not None:
            save_model(graph, cached)

    @classmethod
    def from_reference(cls, cached: Path, probe: Any, input_names: Sequence[str], bf16: bool, threads: int,
                       reference: tuple[np.ndarray, np.ndarray]) -> OpenVinoSpanLogits:
        """The model converted into ``cached`` at an earlier start, checked against PyTorch's fp32 logits recorded
        then (``reference``, on the windows ``probe``; same tolerance), without PyTorch.

        :raises ReaderEngineUnavailable: if it cannot be read or compiled, or its logits differ from the record.
        """
        ov = _openvino()
        self = cls.__new__(cls)
        self.input_names, self.bf16, self.probe, self.reference = list(input_names), bf16, probe, reference
        self.converted_by, self.checked_against = "cache", "record"
        core = ov.Core()
        try:
            graph = core.read_model(str(cached / "model.xml"))
        except Exception as exc:  # damaged or missing (OpenVINO raises its own types)
            raise ReaderEngineUnavailable(f"the cached reader model cannot be read: {exc}") from exc
        try:
            self._compile(core, graph, _config(bf16, threads), reference)
        except ReaderEngineUnavailable:
            raise
        except Exception as exc:  # a record of the wrong shape, say
            raise ReaderEngineUnavailable(f"the cached reader model cannot be checked: {exc}") from exc
        return self

    @property
    def from_cache(self) -> bool:
        """True if an earlier start's converted model was read (no conversion at this start)."""
        return self.converted_by == "cache"

    def _compile(self, core: Any, graph: Any, config: dict[str, Any], reference: tuple[np.ndarray, np.ndarray]) -> None:
        try:
            self.compiled = core.compile_model(graph, "CPU", config)
        except Exception as exc:  # the plugin raises its own types
            raise ReaderEngineUnavailable(f"OpenVINO cannot compile the reader: {exc}") from exc
        # Two requests a stream: one runs while this thread hands the other its next window.
        self.parallel_requests = 2 * max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._check(reference)

    def _check(self, want: tuple[np.ndarray, np.ndarray]) -> None:
        """:raises ReaderEngineUnavailable: if the logits differ from PyTorch's (``want``) on the probe windows."""
        inputs = {n: np.asarray(self.probe[n]) for n in self.input_names}
        n, width = inputs["input_ids"].shape
        got = (np.full((n, width), -1e4, np.float32), np.full((n, width), -1e4, np.float32))
        mask = np.asarray(self.probe["attention_mask"])
        self.run(inputs, [(int(length), [i]) for i, length in enumerate(mask.sum(axis=1).tolist())], *got)
        keep = mask.astype(bool)
        if any(np.shape(w) != keep.shape for w in want):
            raise ReaderEngineUnavailable("the reference logits are not of the probe windows' shape")
        worst = float(np.max([np.abs(np.asarray(w, np.float32)[keep] - g[keep]).max()
                              for w, g in zip(want, got, strict=True)]))  # NaN anywhere makes it NaN
        if not worst <= MAX_LOGIT_DIFFERENCE[self.bf16]:
            raise ReaderEngineUnavailable(f"OpenVINO's logits differ from PyTorch's by {worst:.4f}")

    def run(self, inputs: Mapping[str, np.ndarray], jobs: Sequence[Job], starts: np.ndarray,
            ends: np.ndarray) -> None:
        """Fill ``starts[rows, :length]`` and ``ends[rows, :length]`` for every job, one window a request.

        Requests are made per call: they cannot be shared between threads, and the server reads for several
        questions at once.
        """
        single = [(length, [row]) for length, rows in jobs for row in rows]
        requests = [self.compiled.create_infer_request() for _ in range(min(len(single), self.parallel_requests))]

        def place(request: Any, job: Job) -> None:
            length, rows = job
            starts[rows, :length] = request.get_output_tensor(0).data
            ends[rows, :length] = request.get_output_tensor(1).data

        # inputs in the converted graph's order (its input names are not the tokenizer's)
        run_in_flight(requests, (([inputs[n][rows, :length] for n in self.input_names], (length, rows))
                                 for length, rows in single), place)


def _openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise ReaderEngineUnavailable("openvino is not installed") from exc
    return ov


def _config(bf16: bool, threads: int) -> dict[str, Any]:
    return {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": threads, "INFERENCE_NUM_THREADS": threads}


# ``reference.json`` in a converted model's directory: PyTorch's fp32 logits on the probe windows and what it takes to
# check the model against them without PyTorch. Keyed by the model's files (``model_files_key``) and the versions of
# the libraries that computed either side: a change in any means load PyTorch and check (and record) again.
REFERENCE_FORMAT = 1
REFERENCE_FILE = "reference.json"
_LIBRARIES = ("torch", "transformers", "openvino", "tokenizers")


def _library_versions() -> dict[str, str]:
    return library_versions(_LIBRARIES)


def write_reference(cached: Path, model_dir: Path, payload: Mapping[str, Any]) -> bool:
    """Record ``payload`` (JSON values) for the model converted into ``cached`` from ``model_dir``, written atomically
    beside it; False (logged) where it cannot be: later starts then load PyTorch and check against it again."""
    if not (cached / "model.xml").is_file():
        return False
    record = {"format": REFERENCE_FORMAT, "model_key": model_files_key(model_dir), "versions": _library_versions(),
              **payload}
    target = cached / REFERENCE_FILE
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, target)
        return True
    except (OSError, TypeError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        logger.info("could not record the reader's reference logits in %s (%s)", target, exc)
        return False


def read_reference(cached: Path, model_dir: Path) -> dict[str, Any]:
    """The record ``write_reference`` kept for the model converted into ``cached`` from ``model_dir``.

    :raises ReaderEngineUnavailable: if there is none, or it is of another format, model files or library versions.
    """
    try:
        record = json.loads((cached / REFERENCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReaderEngineUnavailable(f"no recorded reference logits ({type(exc).__name__})") from exc
    if not isinstance(record, dict) or record.get("format") != REFERENCE_FORMAT:
        raise ReaderEngineUnavailable("the recorded reference logits are of another format")
    if record.get("model_key") != model_files_key(model_dir):
        raise ReaderEngineUnavailable("the reference logits were recorded for other model files")
    if record.get("versions") != _library_versions():
        raise ReaderEngineUnavailable("the reference logits were recorded with other library versions")
    return record


def cached_model_dir(model_dir: Path, cache_dir: Path) -> Path | None:
    """Where the converted model of the local model directory ``model_dir`` is kept: named by its path, its weight
    files' sizes and times and OpenVINO's version, so a retrained or updated model is converted again. None for
    a hub id (no local directory) or without OpenVINO."""
    try:
        import openvino as ov
    except ImportError:
        return None
    if not model_dir.is_dir():
        return None
    return cache_dir / "openvino" / f"reader-{model_files_key(model_dir, ov.__version__)}"
