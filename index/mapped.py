"""Memory-mapped arrays read at random: resident memory should follow what queries touch, not the file size."""

from __future__ import annotations

import mmap
from typing import Any

__all__ = ["advise_random"]


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
