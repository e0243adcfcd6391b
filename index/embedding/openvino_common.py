"""What both OpenVINO engines (the bulk embedder and the reader) share: keeping every inference stream busy from one
Python thread, and keeping a model in the cache directory.

Both run many small requests on parallel streams; ``run_in_flight`` is the loop that hands them out and collects
them. Results are collected on the calling thread, oldest first, not in
OpenVINO's completion callbacks: Python code on OpenVINO's threads may run the garbage collector there, and an
OpenVINO object freed on its own thread aborts the process ("Resource deadlock avoided").
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["run_in_flight", "save_model"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def run_in_flight(requests: list[Any], jobs: Iterable[tuple[Any, T]], done: Callable[[Any, T], None]) -> None:
    """Start each job's inputs on the next request, all requests at once; ``done(request, tag)`` runs here for
    each job once its request has finished, before that request takes another job.

    :param requests: infer requests of one compiled model, made by the caller (they are not shared between threads).
    :param jobs: ``(inputs, tag)`` pairs; the tag is what ``done`` needs to place the results.
    """
    running: deque[tuple[Any, T]] = deque()

    def finish_oldest() -> None:
        request, tag = running.popleft()
        request.wait()
        done(request, tag)

    for i, (inputs, tag) in enumerate(jobs):
        if len(running) == len(requests):
            finish_oldest()
        request = requests[i % len(requests)]  # the oldest: finished just above
        request.start_async(inputs)
        running.append((request, tag))
    while running:
        finish_oldest()


def save_model(graph: Any, target: Path) -> bool:
    """Write an OpenVINO model to the directory ``target`` (``model.xml`` and its weights) beside a temporary name
    and rename it into place: a reader sees the old model, none, or the new one, never half of one (a crash leaves
    only a temporary directory). False, with a warning, where the cache cannot be written (the caller goes on with
    the model it has)."""
    import openvino as ov

    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        return True
    except OSError as exc:
        logger.warning("cannot keep the model in %s: %s", target, exc)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
