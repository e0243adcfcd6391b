"""Run a process under a hard memory limit that counts the page cache it reads, and read what it was charged.

Why: a service that memory-maps its index shows every cached page it has mapped in its resident set, and the kernel
maps pages already in the cache 16 at a time around each one read (fault-around; ``MADV_RANDOM`` stops read-ahead
from disk, not that). Resident set size therefore overstates what the service needs. A memory cgroup charges the
process's heap plus each page it brings into the cache, and reclaims cache pages at the limit; a service that fits
runs under it without reading pages again (``workingset_refault_file`` stays near zero). Linux only; cgroup v1
(``memory.limit_in_bytes``) or v2 (``memory.max``), where this process may create a child group.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryCap", "evict_from_cache", "make_cap"]


@dataclass
class MemoryCap:
    """A child memory cgroup of this process's own."""

    path: Path
    version: int  # 1 or 2
    limit_mb: int

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the group (the shell joins it, then becomes the program)."""
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh", *argv]

    def peak_mb(self) -> float:
        """Most memory (heap + page cache) charged to the group since it was made."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int((self.path / name).read_text()) / 2**20

    def refaults(self) -> int:
        """Pages of files read again after the limit made the kernel drop them (thrashing, when large)."""
        for line in (self.path / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key in {"workingset_refault_file", "workingset_refault"}:
                return int(value)
        return 0

    def remove(self) -> None:
        """Delete the group (its processes must have exited)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _own_group(controller_line: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if controllers == controller_line or (controller_line == "" and number == "0" and controllers == ""):
            return path
    return None


def make_cap(limit_mb: int, name: str = "newsroom-bench") -> MemoryCap | None:
    """A fresh child group limited to ``limit_mb``, or None where this machine does not allow one."""
    candidates: list[tuple[Path, int]] = []
    v1 = _own_group("memory")
    if v1 is not None:
        candidates.append((Path("/sys/fs/cgroup/memory") / v1.lstrip("/"), 1))
    v2 = _own_group("")
    if v2 is not None:
        for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            if (root / "cgroup.controllers").is_file():
                candidates.append((root / v2.lstrip("/"), 2))
    for parent, version in candidates:
        group = parent / f"{name}-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            limit = (group / ("memory.limit_in_bytes" if version == 1 else "memory.max"))
            limit.write_text(str(limit_mb * 2**20))
            return MemoryCap(path=group, version=version, limit_mb=limit_mb)
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def evict_from_cache(folder: Path) -> None:
    """Drop the cached pages of every file under ``folder`` (clean pages only), so that a process started next
    reads them in itself and is charged for them."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
