"""A data directory's generations: the ``CURRENT`` pointer, each generation's manifest (the live segments and their
tombstones), publishing a new one durably, and collecting what no kept generation uses.

Publishing writes the manifest in a temporary directory, fsyncs and renames it, then replaces ``CURRENT`` atomically:
a crash at any step leaves ``CURRENT`` naming a complete generation. The store calls it under its write lock.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from index.checksum import sha256_file
from index.errors import DataDirError
from index.local.segment import SegmentView, fsync_path
from index.models import Manifest

__all__ = ["FORMAT_VERSION", "GENERATION", "Generations"]

FORMAT_VERSION = 2
GENERATION = re.compile(r"^gen-(\d{6,})$")


class Generations:
    """The generation files of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.segments_dir = data_dir / "segments"

    def current(self) -> str | None:
        """The live generation's name, or None in a new data directory."""
        try:
            name = (self.data_dir / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DataDirError(f"cannot read {self.data_dir / 'CURRENT'}: {exc.strerror}") from exc
        if not GENERATION.match(name) or not (self.data_dir / name).is_dir():
            raise DataDirError(f"{self.data_dir / 'CURRENT'} names {name!r}, which is not a generation here; "
                               "the data directory is damaged")
        return name

    def manifest(self, name: str) -> Manifest:
        try:
            return Manifest.model_validate_json((self.data_dir / name / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataDirError(f"{self.data_dir / name / 'manifest.json'} cannot be read ({exc}); run "
                               "`newsroom-qa index repair`") from exc

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for p in self.data_dir.iterdir()
                   if (m := GENERATION.match(p.name.split(".")[0]))]
        return f"gen-{max(numbers, default=0) + 1:06d}"

    def publish(self, manifest: Manifest, views: list[SegmentView], checkpoint: Callable[[str], None],
                in_use: set[str]) -> None:
        """Write ``manifest`` (over ``views``, its opened segments) as a new generation, point ``CURRENT`` at it, and
        collect garbage; ``in_use``: segments written but not yet published (a merge waiting for the lock)."""
        name = self._next_name()
        manifest = manifest.model_copy(update={
            "format_version": FORMAT_VERSION, "generation": int(name[4:]),
            "n_documents": sum(v.n_live_docs for v in views), "n_chunks": sum(v.n_live_chunks for v in views),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "checksums": {f"segments/{v.segment.name}/segment.json": sha256_file(v.segment.path / "segment.json")
                          for v in views}})
        tmp = self.data_dir / f"{name}.tmp-{os.getpid()}"
        tmp.mkdir()
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        checkpoint("manifest-written")
        fsync_path(tmp / "manifest.json")
        fsync_path(tmp)
        final = self.data_dir / name
        tmp.rename(final)
        fsync_path(self.data_dir)
        checkpoint("generation-renamed")
        pointer = self.data_dir / f"CURRENT.tmp-{os.getpid()}"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        fsync_path(pointer)
        checkpoint("pointer-written")
        os.replace(pointer, self.data_dir / "CURRENT")
        fsync_path(self.data_dir)
        checkpoint("published")
        self.collect_garbage(keep={final.name}, in_use=in_use)
        checkpoint("garbage-collected")

    def collect_garbage(self, keep: set[str], in_use: set[str]) -> None:
        """Remove unreferenced generations and segments, and leftovers of interrupted writes of processes that are
        gone, keeping one previous generation for readers still on it and for repair."""
        gens = sorted(p.name for p in self.data_dir.iterdir() if GENERATION.match(p.name))
        keep = keep | set(gens[-2:])
        used = set(in_use)
        for name in keep:
            try:
                used |= {ref.name for ref in self.manifest(name).segments}
            except DataDirError:
                continue
        paths = list(self.data_dir.iterdir())
        if self.segments_dir.is_dir():
            paths += list(self.segments_dir.iterdir())
        for path in paths:
            if ".tmp-" in path.name:
                remove = not _process_alive(path.name.rsplit(".tmp-", 1)[1])
            elif path.parent == self.segments_dir:
                remove = path.name not in used
            else:
                remove = GENERATION.match(path.name) is not None and path.name not in keep
            if remove and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif remove:
                path.unlink(missing_ok=True)


def _process_alive(pid_text: str) -> bool:
    """Whether the process that named a temporary file (``.tmp-<pid>``) still runs: then it may be writing it."""
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
