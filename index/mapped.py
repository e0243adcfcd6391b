"""Memory-mapped arrays read at random: resident memory should follow what queries touch, not the file size."""

from __future__ import annotations

import mmap
from typing import Any

__all__ = ["advise_random"]


def advise_random(array: Any) -> bool:
    """Ask the kernel not to read ahead or map neighbouring pages of a memory-mapped numpy array.

    Queries read a few rows of article vectors or a few BM25 postings at a time; by default each page fault also
    maps the cached pages around it, so after a few hundred queries the whole file counts in the service's
    resident memory. ``MADV_RANDOM`` maps only the pages actually read.

    :returns: True if the advice was given (the array is memory-mapped and the platform supports it).
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_RANDOM"):
        return False
    mapping.madvise(mmap.MADV_RANDOM)
    return True
