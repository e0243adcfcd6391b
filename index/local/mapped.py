"""Memory-mapped arrays read at random: resident memory should follow what queries touch, not the file size."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from pathlib import Path
from typing import Any

__all__ = ["advise_random", "advise_random_file"]


def advise_random(array: Any) -> bool:
    """Ask the kernel not to read ahead around the pages of a memory-mapped numpy array.

    Queries read a few rows of article vectors or a few BM25 postings at a time; by default each page read from
    disk also reads the pages around it, so the page cache (which a memory cgroup charges to the service) fills
    with neighbours no query wanted. ``MADV_RANDOM`` reads only the pages asked for: 28,000 random rows of 1M
    chunks' article vectors, read from disk, brought in 136 MB of the file with it and 620 MB without. It does
    not stop fault-around: pages already in the cache are mapped 16 at a time around each one read, so the
    resident set of a process on a hot cache shows most of the file whatever the advice (``benchmarks/memcap.py``).

    :returns: True if the advice was given (the array is memory-mapped and the platform supports it).
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_RANDOM"):
        return False
    mapping.madvise(mmap.MADV_RANDOM)
    return True


def advise_random_file(path: Path) -> int:
    """``MADV_RANDOM`` for every mapping of ``path`` in this process (one that a library such as FAISS made).

    FAISS maps ``index.faiss`` itself and gives no handle to advise; a query re-ranking 100 candidates reads 100
    scattered vectors from it, and without the advice each one read from disk brings ~128 KB of neighbours into the
    page cache. Linux only (``/proc/self/maps``); elsewhere nothing is done.

    :returns: how many mappings were advised.
    """
    maps = Path("/proc/self/maps")
    if not maps.is_file() or not hasattr(mmap, "MADV_RANDOM"):
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target, advised = str(path.resolve()), 0
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(start, end - start, mmap.MADV_RANDOM) == 0:
                advised += 1
    return advised
