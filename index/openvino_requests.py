"""Keeping every OpenVINO inference stream busy from one Python thread.

Both OpenVINO engines (the bulk embedder and the reader) run many small requests on parallel streams; this is the
loop that hands them out and collects them. Results are collected on the calling thread, oldest first, not in
OpenVINO's completion callbacks: Python code on OpenVINO's threads may run the garbage collector there, and an
OpenVINO object freed on its own thread aborts the process ("Resource deadlock avoided").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["run_in_flight"]

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
