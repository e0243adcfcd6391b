"""SHA-256 of a file, read in 1 MiB blocks (model weights and index files can be large), and a cheap key for a
model directory's current files."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

__all__ = ["library_versions", "model_files_key", "sha256_file"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files_key(location: str | Path, *extra: str) -> str:
    """16 hex digits naming what is derived from a model (an exported or converted copy in the cache directory):
    from its path, its weight and config files' sizes and modification times, and ``extra`` (format or library
    versions), so a retrained or updated model gets a new name. Sizes and times, not contents: hashing the weights
    at every start would cost seconds. A hub id (no local directory) is keyed by its name."""
    directory = Path(location)
    files = sorted(p for p in directory.iterdir() if p.suffix in {".safetensors", ".bin", ".json"} and p.is_file()) \
        if directory.is_dir() else []
    basis = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256("|".join([str(directory.resolve()) if files else str(location), basis, *extra])
                          .encode()).hexdigest()[:16]


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions ("-" where absent): what computed a recorded check, so that a
    change in any means checking again."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions
