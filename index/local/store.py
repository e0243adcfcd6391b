"""The data directory: immutable segments (SQLite, FAISS, term counts) and small generations naming the live ones.

Layout::

    data_dir/
      CURRENT             name of the live generation (replaced atomically, last step of every write)
      gen-000007/
        manifest.json     model id, dimension, counts, the live segments with their tombstones, next row id
      segments/
        seg-.../          one immutable batch of articles (``segment.py``)
      .write.lock         serialises writers across processes

A write costs the batch, not the archive (as Lucene writes segments): it builds one new segment for the upserted
articles, marks the articles it deletes or replaces as tombstones in the new generation's manifest, and points
``CURRENT`` at that generation. A crash or SIGKILL at any moment leaves ``CURRENT`` naming a complete generation
whose segments are all complete: the old state or the new one, never a mix. Readers hold a ``Snapshot`` (one
generation) for a whole query.

Segments are merged off the request path (``MergePolicy``: tiers of sizes, as Lucene's log merge policy): ten
segments of a tier become one of the next, and a segment whose deleted share passes a limit is rewritten without
them. ``optimize`` merges everything into one. Searches read every live segment: BM25 with collection statistics
summed over all of them (``lexical.py``), so scores are those of a single index; FAISS per segment, its deleted
chunks excluded by an id selector, the best hits of all segments merged.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from index.errors import DataDirError, DocumentNotFound, ModelMismatch
from index.local import ann
from index.local.generations import FORMAT_VERSION, Generations
from index.local.merge_policy import MergePolicy
from index.local.segment import (
    Segment,
    SegmentDoc,
    SegmentInfo,
    SegmentView,
    build_segment,
    merge_segments,
    new_segment_name,
)
from index.local.snapshot import LexicalQuery, Snapshot
from index.local.stored_documents import format_1_documents, live_documents
from index.models import DocumentWrite, Manifest, SegmentRef

__all__ = ["FORMAT_VERSION", "DocumentWrite", "LexicalQuery", "MergePolicy", "Snapshot", "Store", "StoreStats"]

logger = logging.getLogger(__name__)



class StoreStats(BaseModel):
    """What operators watch: how many segments a search reads, and what merging has cost."""

    segments: int
    deleted_documents: int
    merges: int
    merge_seconds: float
    merging: bool


class Store:
    """Owns a data directory: opens the live generation, applies writes atomically, merges segments.

    Build one per process and share it; reads take ``snapshot()``, writes call ``write()``.

    :param merges: when to merge segments after a write: ``inline`` (before ``write`` returns: tools and tests),
        ``background`` (a thread of this process: the service, so a write returns once its batch is searchable),
        or ``off`` (only ``optimize`` and ``maybe_merge``).
    """

    def __init__(self, data_dir: Path, model_id: str, dimension: int, bm25_k1: float = 1.2,
                 bm25_b: float = 0.75, ann_settings: ann.AnnSettings | None = None,
                 merge_policy: MergePolicy | None = None,
                 merges: Literal["inline", "background", "off"] = "inline") -> None:
        self.data_dir = data_dir
        self.model_id = model_id
        self.dimension = dimension
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.ann = ann_settings or ann.AnnSettings()  # exact up to ann.exact_max chunks per segment, IVF above
        self.merge_policy = merge_policy or MergePolicy()
        self.merges = merges
        self._snapshot: Snapshot | None = None
        self._current_name: str | None = None
        self._segments: dict[str, Segment] = {}
        self._swap = threading.Lock()
        self._writer = threading.Lock()
        self._merging = threading.Lock()
        self._merge_thread: threading.Thread | None = None
        self._merge_again = threading.Event()
        self._merge_count = 0
        self._pending: set[str] = set()
        self._generations = Generations(data_dir)
        self._merge_seconds = 0.0
        # Test hook: called with a step name at each stage of a write (crash tests kill the process there).
        self.checkpoint: Callable[[str], None] = lambda step: None

    @property
    def segments_dir(self) -> Path:
        return self.data_dir / "segments"

    # --- opening -------------------------------------------------------------------------------------
    def _read_current(self) -> str | None:
        return self._generations.current()

    def _read_manifest(self, name: str) -> Manifest:
        return self._generations.manifest(name)

    def _publish(self, manifest: Manifest) -> None:
        """Write ``manifest`` as a new generation and point ``CURRENT`` at it (call under the write lock)."""
        self._generations.publish(manifest, self._views(manifest), self.checkpoint, in_use=set(self._pending))

    def _check_manifest(self, manifest: Manifest) -> None:
        # The model first: a format 1 archive opened with another model is upgraded once the model is right.
        if manifest.model_id != self.model_id or manifest.dimension != self.dimension:
            raise ModelMismatch(
                f"{self.data_dir} was built with embedding model {manifest.model_id!r} "
                f"({manifest.dimension} dimensions) but this service uses {self.model_id!r} "
                f"({self.dimension}); set NEWSROOM_QA_EMBEDDING_MODEL to {manifest.model_id!r}, or use another "
                "--data-dir and add the documents again"
            )
        if manifest.format_version != FORMAT_VERSION:
            raise DataDirError(f"{self.data_dir} uses data format {manifest.format_version}; this version of "
                               f"newsroom-qa reads format {FORMAT_VERSION} (export the archive with the version "
                               "that wrote it, `newsroom-qa index export`, and import it here)")

    def close(self) -> None:
        """Nothing to let go: each snapshot and write opens its files and closes them."""

    def exists(self) -> bool:
        """True if the data directory already holds a generation."""
        return self._read_current() is not None

    def _segment(self, name: str) -> Segment:
        seg = self._segments.get(name)
        if seg is None:
            path = self.segments_dir / name
            missing = DataDirError(f"segment {name} is missing from {self.segments_dir}; run `newsroom-qa index "
                                   "verify`")
            if not (path / "segment.json").is_file():
                raise missing
            try:
                seg = Segment(path)
            except (OSError, RuntimeError) as exc:  # FAISS reports a missing file as a RuntimeError
                if (path / "segment.json").is_file():
                    raise
                # collected while being opened (two newer generations published meanwhile): as missing, which
                # ``snapshot`` answers by opening the newer generation
                raise missing from exc
            self._segments[name] = seg
        return seg

    def _views(self, manifest: Manifest) -> list[SegmentView]:
        return [SegmentView(self._segment(ref.name), frozenset(ref.deleted)) for ref in manifest.segments]

    def snapshot(self) -> Snapshot:
        """The live generation, reloaded if another process has written since it was opened."""
        name = self._read_current()
        with self._swap:
            if self._snapshot is not None and name == self._current_name:
                return self._snapshot
            if name is None:
                self._init_empty()
                name = self._read_current()
                assert name is not None
            manifest = self._read_manifest(name)
            if manifest.format_version == 1 and manifest.model_id == self.model_id:
                name, manifest = self._upgrade(name)
            self._check_manifest(manifest)
            try:
                views = self._views(manifest)
            except DataDirError:
                # Another process published twice and collected this generation's segments between our reading
                # CURRENT and opening them: the generation it points at now is complete.
                newer = self._read_current()
                if newer is None or newer == name:
                    raise
                name, manifest = newer, self._read_manifest(newer)
                self._check_manifest(manifest)
                views = self._views(manifest)
            snap = Snapshot(path=self.data_dir / name, manifest=manifest, views=views, bm25_k1=self.bm25_k1,
                            bm25_b=self.bm25_b)
            live = {ref.name for ref in manifest.segments}
            for old in set(self._segments) - live:  # still open in snapshots that hold them; closed with them
                del self._segments[old]
            self._snapshot, self._current_name = snap, name
            return snap

    def _upgrade(self, name: str) -> tuple[str, Manifest]:
        """A format 1 data directory (one SQLite store and FAISS index per generation, copied by every write) turned
        into one segment, chunk row ids and vectors kept: once, on first open by this version."""
        with self._write_lock():
            current = self._read_current()
            assert current is not None
            if current == name:
                gen = self.data_dir / name
                logger.warning("upgrading %s to data format %d (one-time, in a new generation)", self.data_dir,
                               FORMAT_VERSION)
                docs, next_rowid = format_1_documents(gen)
                info = build_segment(self.segments_dir, new_segment_name(), docs, self.dimension, self.ann,
                                     made_by="upgrade", checkpoint=self.checkpoint)
                self._publish(Manifest(format_version=FORMAT_VERSION, model_id=self.model_id,
                                       dimension=self.dimension, n_documents=0, n_chunks=0, generation=0,
                                       updated_at="", segments=[SegmentRef(name=info.name)],
                                       next_rowid=next_rowid))
            current = self._read_current()
            assert current is not None
            return current, self._read_manifest(current)

    def _init_empty(self) -> None:
        with self._write_lock():
            if self._read_current() is None:
                self._init_empty_locked()

    # --- writing -------------------------------------------------------------------------------------
    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._writer, (self.data_dir / ".write.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _live_manifest(self) -> Manifest:
        """The live generation's manifest, read from disk (another process may have written); call under the lock."""
        name = self._read_current()
        if name is None:
            self._init_empty_locked()
            name = self._read_current()
            assert name is not None
        manifest = self._read_manifest(name)
        self._check_manifest(manifest)
        return manifest

    def _init_empty_locked(self) -> None:
        self._publish(Manifest(format_version=FORMAT_VERSION, model_id=self.model_id, dimension=self.dimension,
                               n_documents=0, n_chunks=0, generation=0, updated_at=""))

    def write(self, upserts: Sequence[DocumentWrite] = (), deletes: Sequence[str] = ()) -> Snapshot:
        """Replace or add ``upserts`` and remove ``deletes`` in one atomic step: one new segment and tombstones.

        :raises DocumentNotFound: if an id in ``deletes`` is not stored (nothing is changed).
        :returns: the new live snapshot.
        """
        last: dict[str, DocumentWrite] = {}
        for item in upserts:
            if item.vectors.shape != (len(item.chunks), self.dimension):
                raise ValueError(f"document {item.document.id!r}: {len(item.chunks)} chunks but vectors of shape "
                                 f"{item.vectors.shape}")
            last[item.document.id] = item  # the same id twice in one batch: the last one stands
        self.snapshot()  # opens (and upgrades, once) the data directory before the lock is taken
        with self._write_lock():
            manifest = self._live_manifest()
            views = self._views(manifest)
            deleted = {v.segment.name: set(v.deleted) for v in views}
            for doc_id in deletes:
                view = next((v for v in views if v.holds(doc_id) and doc_id not in deleted[v.segment.name]), None)
                if view is None:
                    raise DocumentNotFound(f"no document with id {doc_id!r}")
                deleted[view.segment.name].add(doc_id)
            for doc_id in last:
                for view in views:
                    if view.holds(doc_id):
                        deleted[view.segment.name].add(doc_id)
            refs = [SegmentRef(name=v.segment.name, deleted=sorted(deleted[v.segment.name])) for v in views]
            next_rowid = manifest.next_rowid
            if last:
                now = datetime.now(UTC).isoformat(timespec="seconds")
                docs = []
                for item in last.values():
                    rowids = np.arange(next_rowid, next_rowid + len(item.chunks), dtype=np.int64)
                    next_rowid += len(item.chunks)
                    docs.append(SegmentDoc(item.document, item.sentences, item.chunks, item.vectors, rowids, now))
                self.checkpoint("changes-applied")
                info = build_segment(self.segments_dir, new_segment_name(), docs, self.dimension, self.ann,
                                     checkpoint=self.checkpoint)
                refs.append(SegmentRef(name=info.name))
            self._publish(manifest.model_copy(update={"segments": refs, "next_rowid": next_rowid}))
        self._after_write()
        return self.snapshot()

    # --- merging -------------------------------------------------------------------------------------
    def _after_write(self) -> None:
        if self.merges == "inline":
            try:
                self.maybe_merge()
            except Exception:  # the write has landed; a failed merge leaves the segments as they were
                logger.exception("segment merge failed")
        elif self.merges == "background":
            self._merge_again.set()
            if self._merge_thread is None or not self._merge_thread.is_alive():
                self._merge_thread = threading.Thread(target=self._merge_loop, name="segment-merges", daemon=True)
                self._merge_thread.start()

    def _merge_loop(self) -> None:
        while self._merge_again.is_set():
            self._merge_again.clear()
            try:
                self.maybe_merge()
            except Exception:  # a failed merge leaves the archive as it was; the next write tries again
                logger.exception("segment merge failed")
                return

    def wait_for_merges(self) -> None:
        """Block until background merges are done (the CLI before it exits, benchmarks)."""
        thread = self._merge_thread
        if thread is not None:
            thread.join()

    def maybe_merge(self) -> int:
        """Run the merges the policy asks for, one after another; returns how many ran."""
        done = 0
        while True:
            views = self.snapshot().views
            names = self.merge_policy.plan(views)
            if not names or not self._merge(names):
                return done
            done += 1

    def optimize(self) -> Snapshot:
        """Merge every segment into one, without deleted articles (``newsroom-qa index optimize``)."""
        snap = self.snapshot()
        if len(snap.views) > 1 or any(v.deleted for v in snap.views):
            self._merge([v.segment.name for v in snap.views])
        return self.snapshot()

    def _merge(self, names: list[str]) -> bool:
        """Merge the named live segments into one; False if a concurrent merge changed them first."""
        with self._merging:
            started = time.perf_counter()
            views = [v for v in self.snapshot().views if v.segment.name in names]
            if len(views) != len(names):
                return False
            info = None
            if any(v.n_live_docs for v in views):
                name = new_segment_name()
                self._pending.add(name)
                try:
                    info = merge_segments(self.segments_dir, name, views, self.ann,
                                          checkpoint=lambda step: self.checkpoint(f"merge-{step}"))
                except Exception:
                    self._pending.discard(name)
                    if not self._still_live(names):
                        return False  # another process merged these first and collected them under us
                    raise
                except BaseException:
                    self._pending.discard(name)
                    raise
            try:
                with self._write_lock():
                    if not self._commit_merge(names, views, info):
                        if info is not None:
                            shutil.rmtree(self.segments_dir / info.name, ignore_errors=True)
                        return False
            finally:
                if info is not None:
                    self._pending.discard(info.name)
            self._merge_count += 1
            self._merge_seconds += time.perf_counter() - started
            logger.info("merged %d segments in %.2f s", len(names), time.perf_counter() - started)
            return True

    def _still_live(self, names: list[str]) -> bool:
        current = self._read_current()
        return current is not None and set(names) <= {r.name for r in self._read_manifest(current).segments}

    def _commit_merge(self, names: list[str], views: list[SegmentView], info: SegmentInfo | None) -> bool:
        """Publish a generation using the merged segment in place of its sources (under the write lock)."""
        manifest = self._live_manifest()
        live = {ref.name: ref for ref in manifest.segments}
        if not all(n in live for n in names) or (info is not None and not (
                self.segments_dir / info.name / "segment.json").is_file()):
            return False  # another process merged these first, or collected the merged segment
        # Articles deleted while the merge ran: their tombstones move to the merged segment.
        later = sorted({d for v in views for d in set(live[v.segment.name].deleted) - v.deleted})
        refs: list[SegmentRef] = []
        for ref in manifest.segments:
            if ref.name == names[0] and info is not None:
                refs.append(SegmentRef(name=info.name, deleted=later))
            elif ref.name not in names:
                refs.append(ref)
        self.checkpoint("merge-committing")
        self._publish(manifest.model_copy(update={"segments": refs}))
        return True

    def stats(self) -> StoreStats:
        snap = self.snapshot()
        thread = self._merge_thread
        return StoreStats(segments=len(snap.views), deleted_documents=sum(len(v.deleted) for v in snap.views),
                          merges=self._merge_count, merge_seconds=round(self._merge_seconds, 3),
                          merging=thread is not None and thread.is_alive())

    # --- repair --------------------------------------------------------------------------------------
    def rebuild_indexes(self, embed: Callable[[list[str]], np.ndarray], batch: int = 512) -> Snapshot:
        """One new segment with every live article of the SQLite stores, and freshly computed vectors, term counts
        and centroids (repair). Chunk row ids are kept.

        :param embed: the chunk texts (``title. chunk text``, as ingestion embeds them) -> unit vectors.
        """
        with self._write_lock():
            manifest = self._live_manifest()
            docs = live_documents(self.segments_dir, manifest, self.dimension)
            texts = [f"{d.document.title}. {c.text}" for d in docs for c in d.chunks]
            vectors = np.concatenate([np.asarray(embed(texts[i:i + batch]), dtype=np.float32)
                                      for i in range(0, len(texts), batch)]) if texts \
                else np.zeros((0, self.dimension), np.float32)
            offset = 0
            for d in docs:
                d.vectors = vectors[offset:offset + len(d.chunks)]
                offset += len(d.chunks)
            info = build_segment(self.segments_dir, new_segment_name(), docs, self.dimension, self.ann,
                                 made_by="rebuild", checkpoint=self.checkpoint)
            self._publish(manifest.model_copy(update={"segments": [SegmentRef(name=info.name)]}))
        return self.snapshot()
