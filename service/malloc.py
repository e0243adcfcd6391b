"""Tune glibc's malloc for the long-running, multi-threaded server (``serve``, ``slack``).

Why: each query allocates arrays with one entry per chunk (BM25 scores, article scores: 4-8 MB at a million
chunks). glibc serves them from the heap of the thread that asks (one arena per thread of uvicorn's pool, up to
8 per core) and keeps each heap's freed space for reuse, so every thread's heap grows to the largest query it
ran. With no swap that memory is lost to the page cache the index is read through. Two arenas: at 1M chunks the
service's own memory 844 -> 807-812 MB, same latency. A fixed 1 MB mmap threshold saved another 75 MB but made
search 2.7x slower (each array freshly mapped and faulted in), so the thresholds stay glibc's adaptive ones.
glibc's own ``MALLOC_*`` variables, when set, win.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

__all__ = ["trim_heap", "tune_malloc"]

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt(3) parameter number (glibc malloc.h)
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc() -> ctypes.CDLL | None:
    """glibc, where it is the C library (its malloc is what these calls tune), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_malloc(arena_max: int = 2) -> bool:
    """Cap glibc's arenas; False (and nothing changed) where malloc is not glibc's or the user tuned it through
    the environment. Call it once, before the threads start."""
    if any(os.environ.get(name) for name in USER_VARIABLES):
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, arena_max) == 1)
    if not done:
        logger.warning("glibc refused the malloc settings; running with its defaults")
    return done


def trim_heap() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``): glibc keeps what a large write freed
    (embedding activations, the BM25 rebuild) for reuse, so a server's memory would stay at its largest write.
    False where malloc is not glibc's."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
