"""What the service needs of an archive, whichever backend holds it: a data directory (``index.local.store``) or
PostgreSQL (``index.postgres.store``). Both satisfy these protocols; the service is written against them only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from index.models import Document, DocumentWrite, Manifest, Sentence
from index.retrieval import SearchSnapshot

__all__ = ["Archive", "ArchiveSnapshot"]


class ArchiveSnapshot(SearchSnapshot, Protocol):
    """A consistent view for one request: documents, sentences and everything retrieval searches."""

    @property
    def manifest(self) -> Manifest: ...

    def document(self, doc_id: str) -> Document: ...

    def has_document(self, doc_id: str) -> bool: ...

    def documents(self, limit: int = 100, offset: int = 0) -> list[Document]: ...

    def chunk_spans(self) -> dict[int, tuple[str, int, int]]: ...

    def sentences(self, doc_id: str) -> list[Sentence]: ...


class Archive(Protocol):
    """Opens snapshots and applies writes atomically."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def exists(self) -> bool: ...

    def snapshot(self) -> ArchiveSnapshot: ...

    def write(self, upserts: Sequence[DocumentWrite] = (), deletes: Sequence[str] = ()) -> ArchiveSnapshot: ...

    def rebuild_indexes(self, embed: Callable[[list[str]], np.ndarray], batch: int = 512) -> ArchiveSnapshot: ...

    def close(self) -> None:
        """Let go of what the archive holds open between requests (a database pool); idempotent."""
        ...
