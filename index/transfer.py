"""Moving an archive between backends: export to JSON Lines with the vectors, import into any backend.

The first line is a header (format, version, embedding model, dimension, document count); every other line is one
article with its sentences, chunk offsets and chunk vectors (float32, little-endian, base64), so an import stores
exactly what was exported without running the models. Vectors of an IVF index are exported as decoded from its
codes (fp16 by default: within 1e-3 of the originals).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from pydantic import BaseModel, ValidationError

from index.archive import Archive, ArchiveSnapshot
from index.errors import InvalidInput, ModelMismatch
from index.models import Chunk, Document, DocumentWrite, Sentence

__all__ = ["FORMAT", "ExportHeader", "export_archive", "import_archive"]

FORMAT = "newsroom-qa-export"


class ExportHeader(BaseModel):
    """The first line of an export."""

    format: str = FORMAT
    version: int = 1
    model_id: str
    dimension: int
    documents: int


class ExportedDocument(Document):
    """One article line: the stored document with its sentence and chunk offsets and chunk vectors."""

    sentences: list[tuple[int, int]]
    chunks: list[tuple[int, int]]  # (start, end) in chunk order
    vectors: str  # base64 of float32 little-endian, len(chunks) x dimension


def _chunks_by_doc(snap: ArchiveSnapshot) -> dict[str, list[int]]:
    by_doc: dict[str, list[int]] = {}
    for rowid, (doc_id, _, _) in sorted(snap.chunk_spans().items()):
        by_doc.setdefault(doc_id, []).append(rowid)
    return by_doc


def _documents(snap: ArchiveSnapshot, page: int = 500) -> Iterator[Document]:
    offset = 0
    while batch := snap.documents(limit=page, offset=offset):
        yield from batch
        offset += len(batch)


def export_archive(store: Archive, out: IO[str], progress: Any = None) -> int:
    """Write every stored article to ``out``; returns how many. ``progress`` (a tqdm bar) is advanced per article."""
    snap = store.snapshot()
    rows = _chunks_by_doc(snap)
    header = ExportHeader(model_id=store.model_id, dimension=store.dimension, documents=snap.manifest.n_documents)
    out.write(header.model_dump_json() + "\n")
    n = 0
    for listed in _documents(snap):
        doc = snap.document(listed.id)
        rowids = rows.get(doc.id, [])
        passages = [p for _, p in snap.passages([(r, 0.0) for r in rowids])]
        vectors = np.ascontiguousarray(snap.vectors(rowids), dtype="<f4")
        line = ExportedDocument(**doc.model_dump(), sentences=[(s.start, s.end) for s in snap.sentences(doc.id)],
                                chunks=[(p.start, p.end) for p in passages],
                                vectors=base64.b64encode(vectors.tobytes()).decode("ascii"))
        out.write(line.model_dump_json() + "\n")
        n += 1
        if progress is not None:
            progress.update(1)
    return n


def _write_of(line: ExportedDocument, dimension: int, where: str) -> DocumentWrite:
    raw = base64.b64decode(line.vectors, validate=True)
    vectors = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if vectors.size != len(line.chunks) * dimension:
        raise InvalidInput(f"{where}: {len(line.chunks)} chunks but {vectors.size} vector values "
                           f"({dimension} per chunk expected)")
    bad = [(s, e) for s, e in [*line.sentences, *line.chunks] if not 0 <= s < e <= len(line.text)]
    if bad:
        raise InvalidInput(f"{where}: offsets {bad[0]} fall outside the article's {len(line.text)} characters")
    chunks = [Chunk(chunk_id=f"{line.id}#{i}", doc_id=line.id, seq=i, start=s, end=e, text=line.text[s:e])
              for i, (s, e) in enumerate(line.chunks)]
    doc = Document(id=line.id, title=line.title, text=line.text, source=line.source, published=line.published,
                   url=line.url, n_chunks=len(chunks))
    return DocumentWrite(document=doc, sentences=[Sentence(start=s, end=e) for s, e in line.sentences],
                         chunks=chunks, vectors=vectors.reshape(len(chunks), dimension))


def import_archive(store: Archive, lines: IO[str], batch_size: int = 256, progress: Any = None) -> int:
    """Store every article of an export (an existing id is replaced), one atomic write per batch.

    :raises InvalidInput: the file is not an export, or a line is damaged (batches before it stay stored).
    :raises ModelMismatch: the export holds vectors of another embedding model.
    """
    first = lines.readline()
    try:
        header = ExportHeader.model_validate_json(first)
    except ValidationError as exc:
        raise InvalidInput("line 1 is not a newsroom-qa export header (made by `newsroom-qa index export`)") from exc
    if header.format != FORMAT or header.version != 1:
        raise InvalidInput(f"line 1: unsupported export format {header.format!r} version {header.version}")
    if (header.model_id, header.dimension) != (store.model_id, store.dimension):
        raise ModelMismatch(f"the export holds vectors of {header.model_id!r} ({header.dimension} dimensions) but "
                            f"this archive uses {store.model_id!r} ({store.dimension}); set "
                            f"NEWSROOM_QA_EMBEDDING_MODEL to {header.model_id!r} to import it")
    batch: list[DocumentWrite] = []
    n = 0
    for number, text in enumerate(lines, start=2):
        if not text.strip():
            continue
        try:
            line = ExportedDocument.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise InvalidInput(f"line {number}: not an exported article ({str(exc).splitlines()[0]})") from exc
        try:
            batch.append(_write_of(line, header.dimension, f"line {number}"))
        except ValueError as exc:  # bad base64
            raise InvalidInput(f"line {number}: {exc}") from exc
        if len(batch) >= batch_size:
            store.write(upserts=batch)
            n += len(batch)
            batch = []
        if progress is not None:
            progress.update(1)
    if batch:
        store.write(upserts=batch)
        n += len(batch)
    return n
