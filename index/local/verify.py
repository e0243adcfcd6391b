"""Checking a data directory, and repairing what can be rebuilt.

``verify`` reads a generation without trusting it: the manifest, and in every segment it uses every file's checksum,
SQLite's own integrity check, the counts, that FAISS and the term counts hold exactly the chunks SQLite lists, that
tombstones name stored articles, that no two segments share a chunk, and that every chunk and sentence lies inside
its article. ``repair`` points ``CURRENT`` back at the newest generation that verifies when the live one is damaged,
and rebuilds the vectors, BM25 and centroids from the SQLite store when only those disagree.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, ValidationError

from index.checksum import sha256_file
from index.local.ann import ivf_ids, stored_vectors
from index.local.generations import GENERATION
from index.local.segment import SegmentInfo, fsync_path
from index.local.store import Store
from index.local.term_counts import TermCounts
from index.models import Manifest

__all__ = ["VerifyReport", "repair", "verify", "verify_generation"]


class VerifyReport(BaseModel):
    data_dir: str
    generation: str | None
    ok: bool
    checked: list[str]
    problems: list[str]


def verify_generation(gen: Path) -> tuple[list[str], list[str]]:
    """(checks passed, problems) for one generation directory and every segment it uses."""
    checked: list[str] = []
    try:
        manifest = Manifest.model_validate_json((gen / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        return checked, [f"manifest.json is missing or unreadable: {exc}"]
    checked.append(f"manifest: {manifest.n_documents} documents, {manifest.n_chunks} chunks in "
                   f"{len(manifest.segments)} segments, {manifest.model_id}")
    problems = _checksum_problems(gen.parent, manifest.checksums)
    n_docs = n_chunks = 0
    seen_rowids: set[int] = set()
    for ref in manifest.segments:
        seg = gen.parent / "segments" / ref.name
        seg_checked, seg_problems, live_docs, live_rowids = _verify_segment(seg, set(ref.deleted), manifest.dimension)
        checked += [f"{ref.name}: {c}" for c in seg_checked]
        problems += [f"{ref.name}/{p}" for p in seg_problems]
        n_docs += live_docs
        n_chunks += len(live_rowids)
        if seen_rowids & live_rowids:
            problems.append(f"{ref.name} holds chunk row ids another segment also holds")
        seen_rowids |= live_rowids
    if not problems:
        checked.append(f"checksums of {len(manifest.checksums)} segments" if manifest.checksums
                       else "checksums: none recorded")
    if n_docs != manifest.n_documents or n_chunks != manifest.n_chunks:
        problems.append(f"counts disagree: manifest says {manifest.n_documents} documents / {manifest.n_chunks} "
                        f"chunks, the segments hold {n_docs} / {n_chunks} live ones")
    elif manifest.segments:
        checked.append(f"FAISS holds exactly the {n_chunks} chunks of SQLite, in every segment")
    return checked, problems


def _verify_segment(seg: Path, deleted: set[str], dimension: int) -> tuple[list[str], list[str], int, set[int]]:
    """(checks passed, problems, live documents, live chunk row ids) of one segment."""
    checked: list[str] = []
    try:
        info = SegmentInfo.model_validate_json((seg / "segment.json").read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        return checked, [f"segment.json is missing or unreadable: {exc}"], 0, set()
    problems = _checksum_problems(seg, info.checksums)
    try:
        db = sqlite3.connect(f"file:{seg / 'store.sqlite'}?mode=ro", uri=True)
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            return checked, [*problems, f"store.sqlite fails SQLite's integrity check: {integrity}"], 0, set()
        doc_ids = [r[0] for r in db.execute("SELECT id FROM documents ORDER BY pos")]
        chunk_rows = db.execute("SELECT rowid, doc_id FROM chunks").fetchall()
        bad_chunks = db.execute("SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.doc_id WHERE "
                                "d.id IS NULL OR c.start < 0 OR c.end > length(d.text) OR c.start >= c.end"
                                ).fetchone()[0]
        bad_sentences = db.execute("SELECT count(*) FROM sentences s LEFT JOIN documents d ON d.id = s.doc_id "
                                   "WHERE d.id IS NULL OR s.start < 0 OR s.end > length(d.text) OR s.start >= s.end"
                                   ).fetchone()[0]
        db.close()
    except sqlite3.Error as exc:
        return checked, [*problems, f"store.sqlite cannot be read: {exc}"], 0, set()
    checked.append("store.sqlite integrity")
    rowids = {r[0] for r in chunk_rows}
    if len(doc_ids) != info.n_documents or len(rowids) != info.n_chunks:
        problems.append(f"counts disagree: segment.json says {info.n_documents} documents / {info.n_chunks} "
                        f"chunks, SQLite holds {len(doc_ids)} / {len(rowids)}")
    unknown = deleted - set(doc_ids)
    if unknown:
        problems.append(f"{len(unknown)} tombstones name articles the segment does not hold")
    if bad_chunks or bad_sentences:
        problems.append(f"{bad_chunks} chunks and {bad_sentences} sentences lie outside their article")
    else:
        checked.append("every chunk and sentence lies inside its article")
    problems += _index_problems(seg, rowids, len(doc_ids), dimension, checked)
    live = {r for r, doc_id in chunk_rows if doc_id not in deleted}
    return checked, problems, len(set(doc_ids) - deleted), live


def _checksum_problems(base: Path, checksums: dict[str, str]) -> list[str]:
    problems = []
    for rel, expected in sorted(checksums.items()):
        path = base / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{rel} does not match its checksum (changed or corrupted since it was written)")
    return problems


def _index_problems(gen: Path, rowids: set[int], n_docs: int, dimension: int, checked: list[str]) -> list[str]:
    problems = []
    try:
        index = faiss.read_index(str(gen / "index.faiss"))
        ids = set(stored_vectors(index)[0].tolist())
        if index.d != dimension:
            problems.append(f"index.faiss has {index.d} dimensions, the manifest {dimension}")
        if ids != rowids:
            problems.append(f"FAISS and SQLite disagree: {len(ids - rowids)} vectors without a chunk, "
                            f"{len(rowids - ids)} chunks without a vector")
        else:
            checked.append(f"FAISS holds exactly the {len(ids)} chunks of SQLite")
    except RuntimeError as exc:
        problems.append(f"index.faiss cannot be read: {exc}")
    if (gen / "candidates.faiss").is_file():
        try:
            candidates = faiss.read_index(str(gen / "candidates.faiss"))
            held = set(ivf_ids(candidates).tolist())
            if held != rowids or candidates.d != dimension:
                problems.append(f"candidates.faiss holds {len(held)} vectors of {candidates.d} dimensions, "
                                f"{len(held - rowids)} without a chunk and {len(rowids - held)} chunks missing; "
                                f"expected the {len(rowids)} chunks of SQLite in {dimension}")
            else:
                checked.append("the candidate index holds exactly the chunks of SQLite")
        except RuntimeError as exc:
            problems.append(f"candidates.faiss cannot be read: {exc}")
    try:
        counts = TermCounts.load(gen / "lexical")
        if set(counts.rowids.tolist()) != rowids or counts.n_docs != n_docs:
            problems.append("BM25 and SQLite disagree on the chunks")
        else:
            checked.append("BM25 covers the same chunks")
    except Exception as exc:  # any failure to load is the finding
        problems.append(f"the BM25 index cannot be read: {exc}")
    vectors = gen / "doc_vectors.npy"
    if vectors.is_file():
        try:
            shape = np.load(vectors, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError) as exc:
            problems.append(f"doc_vectors.npy cannot be read: {exc}")
        else:
            if shape != (n_docs, dimension):
                problems.append(f"doc_vectors.npy has shape {shape}, expected {(n_docs, dimension)}")
    return problems


def verify(data_dir: Path) -> VerifyReport:
    """Check the live generation named by ``CURRENT``."""
    current = data_dir / "CURRENT"
    try:
        name = current.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return VerifyReport(data_dir=str(data_dir), generation=None, ok=False, checked=[],
                            problems=[f"{current} cannot be read: {exc.strerror or exc}"])
    if not GENERATION.match(name) or not (data_dir / name).is_dir():
        return VerifyReport(data_dir=str(data_dir), generation=name, ok=False, checked=[],
                            problems=[f"CURRENT names {name!r}, which is not a generation in {data_dir}"])
    checked, problems = verify_generation(data_dir / name)
    return VerifyReport(data_dir=str(data_dir), generation=name, ok=not problems, checked=checked,
                        problems=problems)


def _point_current_at(data_dir: Path, name: str) -> None:
    pointer = data_dir / f"CURRENT.tmp-{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    fsync_path(pointer)
    os.replace(pointer, data_dir / "CURRENT")
    fsync_path(data_dir)


def repair(store: Store, embed: Callable[[list[str]], np.ndarray]) -> list[str]:
    """Make the data directory verify again; returns what was done. Never deletes a generation.

    :param embed: embeds chunk texts (``title. chunk``), used only when the vectors must be rebuilt.
    """
    data_dir = store.data_dir
    report = verify(data_dir)
    if report.ok:
        return ["nothing to repair: the data directory verifies"]
    actions: list[str] = []
    live = report.generation if report.generation and (data_dir / report.generation).is_dir() else None
    sqlite_ok = live is not None and not any(
        p.startswith("manifest.json") or "store.sqlite" in p or "segment.json" in p or "tombstones" in p
        or "counts disagree" in p for p in report.problems)
    if not sqlite_ok:
        candidates = sorted((p.name for p in data_dir.iterdir() if GENERATION.match(p.name)), reverse=True)
        good = next((g for g in candidates if not verify_generation(data_dir / g)[1]), None)
        if good is None:
            raise_msg = "no generation in the data directory verifies; restore it from a backup"
            return [*actions, raise_msg]
        _point_current_at(data_dir, good)
        actions.append(f"CURRENT now names {good}, the newest generation that verifies "
                       f"(was {report.generation!r}; kept on disk for inspection)")
        if verify(data_dir).ok:
            return actions
    store.rebuild_indexes(embed)
    actions.append("rebuilt the vectors, BM25 and article centroids from the SQLite store in a new generation")
    return actions
