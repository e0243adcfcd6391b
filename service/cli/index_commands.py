"""``newsroom-qa index ...``: build, check, repair, merge, export and import the archive."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    pass

from service.cli.common import (
    _NOT_A_DATA_DIR,
    _friendly_errors,
    _quiet_libraries,
    _service,
    _settings,
    _where,
    cli,
    data_dir_option,
)


@cli.group()
def index() -> None:
    """Add, list and remove stored articles (writes go straight to the data directory)."""


@index.command("init")
@data_dir_option
@_friendly_errors
def index_init(data_dir: Path | None) -> None:
    """Create the data directory if it is new and index the bundled seed articles into it; seeds already stored
    unchanged are not embedded again, and other articles are left as they are."""
    service = _service(data_dir, seed_if_empty=False)
    added = service.add_seeds().documents
    fresh = sum(not d.unchanged for d in added)
    manifest = service.store.snapshot().manifest
    click.echo(f"seeds: {fresh} indexed, {len(added) - fresh} already stored unchanged; "
               f"{manifest.n_documents} documents, {manifest.n_chunks} chunks in {_where(service.settings)}")


@index.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Articles per atomic write. An interrupted run, repeated, skips what was stored unchanged.")
@click.option("--all-or-none", is_flag=True, help="One atomic write for everything instead of batches.")
@click.option("--dask", "scheduler", default=None, metavar="ADDRESS",
              help="Clean, chunk and embed on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); "
                   "this process writes what the workers return.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Clean, chunk and embed on a local Dask cluster of N worker processes (one thread each).")
@data_dir_option
@_friendly_errors
def index_add(paths: tuple[Path, ...], batch_size: int, all_or_none: bool, scheduler: str | None,
              workers: int | None, data_dir: Path | None) -> None:
    """Add article files or directories (.txt, .md, .html, .jsonl; optional <name>.meta.json sidecars)."""
    if (scheduler or workers) and all_or_none:
        raise click.UsageError("--all-or-none writes once at the end; with --dask or --workers each batch is written "
                               "as it is done")
    service = _service(data_dir, seed_if_empty=False)
    if scheduler or workers:
        from index.pipeline.distributed import cluster_client

        with cluster_client(scheduler, workers or 2) as client:
            result = service.add_paths_on_dask(list(paths), client, batch_size=min(batch_size, 64),
                                               show_progress=True)
    else:
        result = service.add_paths(list(paths), show_progress=True, batch_size=None if all_or_none else batch_size)
    for doc in result.documents:
        verb = "unchanged" if doc.unchanged else "replaced" if doc.replaced else "added"
        click.echo(f"{verb} {doc.id}: {doc.chunks} chunks  {doc.title}")
    skipped = sum(d.unchanged for d in result.documents)
    click.echo(f"{len(result.documents)} documents stored in {_where(service.settings)}"
               + (f" ({skipped} already stored unchanged, not embedded again)" if skipped else ""))


@index.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@data_dir_option
@_friendly_errors
def index_verify(as_json: bool, data_dir: Path | None) -> None:
    """Check the data directory: manifest, checksums, SQLite integrity, counts, FAISS/BM25 vs SQLite, offsets.
    Exit code 1 when something is wrong."""
    from index.local.verify import verify

    settings = _settings(data_dir)
    if settings.backend != "faiss":
        raise click.UsageError(_NOT_A_DATA_DIR)
    report = verify(settings.data_dir)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        for line in report.checked:
            click.echo(f"ok       {line}")
        for line in report.problems:
            click.echo(f"PROBLEM  {line}")
        click.echo(f"{settings.data_dir} ({report.generation}): " + ("verifies" if report.ok else
                   f"{len(report.problems)} problem(s); 'newsroom-qa index repair' rebuilds what can be rebuilt"))
    if not report.ok:
        sys.exit(1)


def _store(data_dir: Path | None) -> Any:
    """The configured archive, without loading the reader or spaCy (the embedding model only names it)."""
    from service.answering.qa import build_embedder, build_store

    settings = _settings(data_dir)
    _quiet_libraries()
    return build_store(settings, build_embedder(settings))


@index.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
@data_dir_option
@_friendly_errors
def index_export(output: Path | None, data_dir: Path | None) -> None:
    """Write every article, with its chunk offsets and vectors, as JSON Lines (to move between backends)."""
    from tqdm import tqdm

    from index.transfer import export_archive

    store = _store(data_dir)
    total = store.snapshot().manifest.n_documents
    if output is None:
        n = export_archive(store, sys.stdout)
    else:
        partial = output.with_name(output.name + ".partial")
        with partial.open("w", encoding="utf-8") as out, tqdm(total=total, desc="exporting", unit="doc") as bar:
            n = export_archive(store, out, bar)
        partial.replace(output)  # a file named like the export is always a complete one
    click.echo(f"exported {n} documents" + (f" to {output}" if output else ""), err=True)


@index.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Articles per atomic write.")
@data_dir_option
@_friendly_errors
def index_import(file: Path, batch_size: int, data_dir: Path | None) -> None:
    """Store the articles of an export (from `index export`, of either backend); an existing id is replaced."""
    from tqdm import tqdm

    from index.transfer import import_archive

    store = _store(data_dir)
    lines = sum(1 for _ in file.open(encoding="utf-8")) - 1
    with file.open(encoding="utf-8") as fh, tqdm(total=max(0, lines), desc="importing", unit="doc") as bar:
        n = import_archive(store, fh, batch_size=batch_size, progress=bar)
    click.echo(f"imported {n} documents")


@index.command("repair")
@data_dir_option
@_friendly_errors
def index_repair(data_dir: Path | None) -> None:
    """Make the data directory verify again: go back to the newest generation that verifies, or rebuild the
    vectors, BM25 and centroids from the stored articles. Never deletes a generation."""
    from index.local.store import Store
    from index.local.verify import repair, verify
    from service.answering.qa import build_embedder, build_store

    settings = _settings(data_dir)
    _quiet_libraries()
    embedder = build_embedder(settings)
    store = build_store(settings, embedder)
    if not isinstance(store, Store):
        raise click.UsageError(_NOT_A_DATA_DIR)
    for action in repair(store, embedder.embed):
        click.echo(action)
    report = verify(settings.data_dir)
    click.echo("the data directory verifies" if report.ok else "still damaged: " + "; ".join(report.problems))
    if not report.ok:
        sys.exit(1)


@index.command("optimize")
@data_dir_option
@_friendly_errors
def index_optimize(data_dir: Path | None) -> None:
    """Merge every segment of the data directory into one, without the deleted articles (searches read one
    segment; the service merges small segments by itself, this is the full merge)."""
    import time

    from index.local.store import Store
    from service.answering.qa import build_embedder, build_store

    settings = _settings(data_dir)
    _quiet_libraries()
    store = build_store(settings, build_embedder(settings))
    if not isinstance(store, Store):
        raise click.UsageError("index optimize merges a data directory's segments; PostgreSQL keeps one table")
    before = store.stats()
    started = time.perf_counter()
    snap = store.optimize()
    click.echo(f"{before.segments} segments ({before.deleted_documents} deleted articles) -> {len(snap.views)} in "
               f"{time.perf_counter() - started:.1f} s; {snap.manifest.n_documents} documents, "
               f"{snap.manifest.n_chunks} chunks")


@index.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=1000)
@data_dir_option
@_friendly_errors
def index_list(limit: int, data_dir: Path | None) -> None:
    """List stored articles: id, date, outlet, chunks, title."""
    listing = _service(data_dir, seed_if_empty=False).list_documents(limit=limit)
    for d in listing.documents:
        click.echo(f"{d.id}\t{d.published or '-'}\t{d.source or '-'}\t{d.chunks}\t{d.title}")
    click.echo(f"{listing.total} documents", err=True)


@index.command("remove")
@click.argument("doc_ids", nargs=-1, required=True)
@data_dir_option
@_friendly_errors
def index_remove(doc_ids: tuple[str, ...], data_dir: Path | None) -> None:
    """Remove stored articles by id (all or none)."""
    service = _service(data_dir, seed_if_empty=False)
    service.delete_documents(list(doc_ids))
    click.echo(f"removed {len(doc_ids)} documents")
