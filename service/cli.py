"""Command line: ``newsroom-qa serve|slack|index|ask|feedback|eval|train-reader`` and the ``ask`` shortcut.

Each command parses its arguments, calls ``QAService`` (or a running server through httpx) and prints the result;
errors are printed as one line and exit with code 1, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from index.errors import QAError
from index.models import Filters
from service.schemas import Recency

if TYPE_CHECKING:
    from service.qa import QAService
    from service.readers.calibration import Calibration
    from service.settings import Settings

__all__ = ["ask_main", "cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_OVERRIDES = "newsroom_qa_overrides"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a storage option in the click context, where ``_settings`` picks it up for any command."""
    if value is not None and param.name:
        ctx.meta.setdefault(_OVERRIDES, {})[param.name] = value
    return value


def backend_options(func: F) -> F:
    """``--backend`` and ``--database-url``: which storage backend a command opens."""
    func = click.option("--database-url", default=None, expose_value=False, callback=_remember,
                        help="postgres backend: the server's postgresql:// DSN (default: NEWSROOM_QA_DATABASE_URL)."
                        )(func)
    func = click.option("--backend", type=click.Choice(["faiss", "postgres"]), default=None, expose_value=False,
                        callback=_remember,
                        help="Where the archive lives: a data directory (faiss, the default) or PostgreSQL "
                             "(default: NEWSROOM_QA_BACKEND).")(func)
    return func


def data_dir_option(func: F) -> F:
    """``--data-dir`` plus the backend choice, for every command that opens the archive."""
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data directory (default: NEWSROOM_QA_DATA_DIR or ~/.local/share/newsroom-qa)."
                        )(backend_options(func))


_NOT_A_DATA_DIR = ("index verify and index repair check a data directory; with NEWSROOM_QA_BACKEND=postgres the "
                   "database keeps itself consistent (each write is one transaction)")


def _where(settings: Settings) -> str:
    """Where the archive is, for messages (a DSN without its password)."""
    if settings.backend == "postgres" and settings.database_url:
        from sqlalchemy import make_url

        return "PostgreSQL " + make_url(settings.database_url).render_as_string(hide_password=True)
    return str(settings.data_dir)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass


def _tune_malloc(settings: Settings) -> None:
    """Long-running servers only: see service/malloc.py (a one-shot command exits before it would matter)."""
    if settings.tune_malloc:
        from service.malloc import tune_malloc

        tune_malloc()


def _configure_logging(level: int) -> None:
    """Our own modules log at ``level``; third-party libraries only warnings."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("index", "service"):
        logging.getLogger(name).setLevel(level)


def _server_logging(settings: Settings) -> None:
    """JSON lines with request ids for the server (one access line per request comes from the app itself)."""
    if settings.log_format == "json":
        from service.api.observability import configure_json_logging

        configure_json_logging(logging.INFO)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    from service.settings import Settings

    ctx = click.get_current_context(silent=True)
    stored = ctx.meta.get(_OVERRIDES, {}) if ctx is not None else {}
    values = {k: v for k, v in {"data_dir": data_dir, **stored, **overrides}.items() if v is not None}
    return Settings(**values)


def _long_running(settings: Settings) -> Settings:
    """A server merges segments in a thread of its own (a write returns as soon as its batch is searchable), unless
    NEWSROOM_QA_SEGMENT_MERGES says otherwise; one-shot commands merge before they return."""
    if "segment_merges" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"segment_merges": "background"})


def _service(data_dir: Path | None, seed_if_empty: bool = True, **overrides: Any) -> QAService:
    from service.qa import QAService

    _quiet_libraries()
    return QAService.from_settings(_settings(data_dir, **overrides), seed_if_empty=seed_if_empty)


def _one_shot_service(data_dir: Path | None) -> QAService:
    """The service for one in-process ``ask`` or ``search``: as ``_service``, but the embedding model's PyTorch
    copy is loaded only if this call embeds a batch (seeding a new data dir); a question is embedded by the ONNX
    export checked at an earlier start (``Settings.defer_embedding_model``)."""
    return _service(data_dir, defer_embedding_model=True)


def _friendly_errors(func: F) -> F:
    """Turn the project's errors into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QAError as exc:
            raise click.ClickException(str(exc)) from exc
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise click.ClickException(f"invalid setting: {problems}") from exc

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="newsroom-qa")
def cli() -> None:
    """newsroom-qa: cited, extractive answers from a newsroom's archive."""
    _configure_logging(logging.INFO)


@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@data_dir_option
@_friendly_errors
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the HTTP API; an empty data directory is filled with the bundled seed articles first."""
    import uvicorn

    from service.api.app import create_app

    settings = _long_running(_settings(data_dir, host=host, port=port))
    _quiet_libraries()
    _tune_malloc(settings)
    from service.qa import QAService

    service = QAService.from_settings(settings)
    click.echo(f"newsroom-qa: {service.store.snapshot().manifest.n_documents} documents in {_where(settings)}; "
               f"chat page on http://{settings.host}:{settings.port}/ (API docs at /docs)", err=True)
    _server_logging(settings)
    uvicorn.run(create_app(service=service), host=settings.host, port=settings.port, log_level="info",
                log_config=None, access_log=False)


@cli.command()
@click.option("--host", default=None, help="Interface to listen on for HTTP events (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port for HTTP events (default 8000).")
@data_dir_option
@_friendly_errors
def slack(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else the HTTP service with /slack/events."""
    settings = _long_running(_settings(data_dir, host=host, port=port))
    from service.slack_app import build_slack_app, require_slack_settings

    socket_mode = settings.slack_app_token is not None
    require_slack_settings(settings, socket_mode=socket_mode)  # before loading any model
    _quiet_libraries()
    _tune_malloc(settings)
    from service.newsroom import Newsroom

    newsroom = Newsroom.from_settings(settings)
    if socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert settings.slack_app_token is not None
        click.echo("newsroom-qa: Slack bot connected in Socket Mode (Ctrl-C stops it)", err=True)
        SocketModeHandler(build_slack_app(newsroom, socket_mode=True),
                          settings.slack_app_token.get_secret_value()).start()
        return
    import uvicorn

    from service.api.app import create_app

    click.echo(f"newsroom-qa: Slack events on http://{settings.host}:{settings.port}/slack/events "
               "(point the app's Request URL at it through your HTTPS proxy)", err=True)
    _server_logging(settings)
    uvicorn.run(create_app(service=newsroom), host=settings.host, port=settings.port, log_level="info",
                log_config=None, access_log=False)


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
        from index.distributed import cluster_client

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
    from index.verify import verify

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
    from service.qa import build_embedder, build_store

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
    from index.store import Store
    from index.verify import repair, verify
    from service.qa import build_embedder, build_store

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

    from index.store import Store
    from service.qa import build_embedder, build_store

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


def _post_server(server: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload`` to a running service; its error, or an unreachable server, as one line."""
    import httpx

    url = server.rstrip("/") + path
    headers = {}
    if key := os.environ.get("NEWSROOM_QA_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=60)
    except httpx.RequestError as exc:
        raise click.ClickException(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"{url} answered {response.status_code}: {detail}")
    body: dict[str, Any] = response.json()
    return body


# The configured service is probed before each in-process fallback: on loopback a refused connection is immediate
# and 0.3 s is ample for an accept; across a network allow a little more.
PROBE_CONNECT_TIMEOUT = {True: 0.3, False: 1.5}
PROBE_TIMEOUT = 3.0  # /healthz reads the archive's manifest: milliseconds on a service that is up


def _probe(url: str) -> str | None:
    """None if a newsroom-qa service answers ``GET url/healthz``; else why not, for the fallback's note."""
    import httpx

    host = httpx.URL(url).host if url.startswith(("http://", "https://")) else ""
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    try:
        response = httpx.get(url + "/healthz", timeout=httpx.Timeout(PROBE_TIMEOUT,
                                                                     connect=PROBE_CONNECT_TIMEOUT[loopback]))
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return f"no newsroom-qa service at {url}"
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        return f"the newsroom-qa service at {url} did not answer ({type(exc).__name__})"
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok" \
            or "documents" not in body:
        return f"{url} answered, but not as a newsroom-qa service (HTTP {response.status_code} on /healthz)"
    return None


_NO_SERVER = ("", "none", "off")


def _service_url(server: str | None, in_process: bool, data_dir: Path | None) -> str | None:
    """The running service to send the request to, or None to answer in-process.

    ``--server URL`` is used as given (down: an error, never a fallback). ``--in-process``, ``--server ''`` (or
    ``none``/``off``) and an archive named on the command line (``--data-dir``, ``--backend``, ``--database-url``)
    answer in-process: a service's archive is whatever it was started on. Otherwise the configured service
    (``NEWSROOM_QA_SERVER_URL``, default where ``serve`` listens) when it answers, else in-process with a note.
    """
    ctx = click.get_current_context()
    named_archive = data_dir is not None or bool(ctx.meta.get(_OVERRIDES))
    explicit = server is not None and server.strip().lower() not in _NO_SERVER
    if explicit and in_process:
        raise click.UsageError("--server and --in-process exclude each other")
    if explicit and named_archive:
        raise click.UsageError("--server answers from the archive that service was started on; --data-dir, "
                               "--backend and --database-url name a local one: give one or the other")
    if explicit:
        assert server is not None
        return server.strip().rstrip("/")
    if in_process or named_archive or server is not None:
        return None
    url = _settings(None).client_url()
    if url is None:
        return None
    problem = _probe(url)
    if problem is None:
        return url
    click.echo(f"note: {problem}; answering in-process (slower: loads the models; start one with "
               "'newsroom-qa serve')", err=True)
    return None


def retrieval_options(func: F) -> F:
    """The options ``ask`` and ``search`` share: what to read (top k, metadata filters, recency) and where."""
    options = [
        click.option("--json", "as_json", is_flag=True, help="Print the raw JSON response."),
        click.option("--server", default=None,
                     help="Ask the running service at this URL (an error if it is down). Default: the service at "
                          "NEWSROOM_QA_SERVER_URL (else http://HOST:PORT, where 'serve' listens) when one answers "
                          "there, else in-process; '' or 'none': in-process."),
        click.option("--in-process", is_flag=True,
                     help="Answer in this process from the local archive (loads the models: seconds), even when a "
                          "service is running."),
        click.option("--top-k", type=int, default=None, help="Passages to read or return."),
        click.option("--source", "sources", multiple=True, help="Only articles from this outlet (repeatable)."),
        click.option("--doc", "doc_ids", multiple=True, help="Only this document id (repeatable)."),
        click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None,
                     help="Published on or after YYYY-MM-DD."),
        click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None,
                     help="Published on or before YYYY-MM-DD."),
        click.option("--recency-half-life", "half_life", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Favour newer articles: the age in days at which one counts half as recent."),
        click.option("--recency-weight", type=click.FloatRange(0, 1), default=None,
                     help="With --recency-half-life: how much recency matters (0-1)  [default: 0.3]."),
        data_dir_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


class RetrievalArgs(BaseModel):
    """What ``retrieval_options`` parsed, as the service's request models."""

    filters: Filters
    recency: Recency | None

    @classmethod
    def parse(cls, sources: tuple[str, ...], doc_ids: tuple[str, ...], since: datetime | None,
              until: datetime | None, half_life: float | None, recency_weight: float | None) -> RetrievalArgs:
        """:raises click.UsageError: for a recency weight without a half-life (it would silently do nothing)."""
        if recency_weight is not None and half_life is None:
            raise click.UsageError("--recency-weight needs --recency-half-life (the age at which an article counts "
                                   "half as recent)")
        recency = None
        if half_life is not None:
            recency = Recency(half_life_days=half_life) if recency_weight is None else Recency(
                half_life_days=half_life, weight=recency_weight)
        return cls(filters=Filters(sources=list(sources) or None, doc_ids=list(doc_ids) or None,
                                   published_from=since.date() if since else None,
                                   published_to=until.date() if until else None),
                   recency=recency)

    def payload(self) -> dict[str, Any]:
        """The JSON fields of a search or ask request."""
        return {"filters": None if self.filters.is_empty() else self.filters.model_dump(mode="json"),
                "recency": self.recency.model_dump(mode="json") if self.recency else None}


@click.command("ask")
@click.argument("question")
@retrieval_options
@_friendly_errors
def ask(question: str, as_json: bool, server: str | None, in_process: bool, top_k: int | None,
        sources: tuple[str, ...], doc_ids: tuple[str, ...], since: datetime | None, until: datetime | None,
        half_life: float | None, recency_weight: float | None, data_dir: Path | None) -> None:
    """Ask a question; prints the answer with numbered citations, or says the archive does not answer.

    Through the running service when one answers (NEWSROOM_QA_SERVER_URL, default http://127.0.0.1:8000), else
    in-process from the local archive."""
    from service.prompts import load_prompts
    from service.render import render_answer
    from service.schemas import AnswerResponse

    args = RetrievalArgs.parse(sources, doc_ids, since, until, half_life, recency_weight)
    settings = _settings(data_dir)
    archive_empty = False
    server = _service_url(server, in_process, data_dir)
    if server:
        prompts = load_prompts(settings.prompts_dir)
        if not question.strip():
            raise click.ClickException(prompts.templates.errors["empty_question"])
        response = AnswerResponse.model_validate(
            _post_server(server, "/v1/ask", {"question": question, "top_k": top_k, **args.payload()}))
        templates = prompts.templates.cli
        archive_empty = response.abstained and response.message == prompts.templates.http["empty_archive"]
    else:
        _configure_logging(logging.WARNING)
        service = _one_shot_service(data_dir)
        response = service.ask(question, top_k=top_k, filters=args.filters, recency=args.recency)
        templates = service.prompts.templates.cli
        archive_empty = service.store.snapshot().manifest.n_documents == 0
    if as_json:
        click.echo(json.dumps(response.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        click.echo(render_answer(response, templates, archive_empty=archive_empty))


@click.command("search")
@click.argument("query")
@click.option("--explain", is_flag=True, help="Show each passage's dense, lexical and fused scores.")
@retrieval_options
@_friendly_errors
def search(query: str, explain: bool, as_json: bool, server: str | None, in_process: bool, top_k: int | None,
           sources: tuple[str, ...], doc_ids: tuple[str, ...], since: datetime | None, until: datetime | None,
           half_life: float | None, recency_weight: float | None, data_dir: Path | None) -> None:
    """The passages the answerer would read for QUERY, best first (what /v1/search returns); through the running
    service when one answers, as ``ask``."""
    from service.prompts import load_prompts
    from service.render import render_passages
    from service.schemas import SearchResponse

    args = RetrievalArgs.parse(sources, doc_ids, since, until, half_life, recency_weight)
    server = _service_url(server, in_process, data_dir)
    if server:
        templates = load_prompts(_settings(data_dir).prompts_dir).templates
        response = SearchResponse.model_validate(
            _post_server(server, "/v1/search", {"query": query, "top_k": top_k, "explain": explain,
                                                **args.payload()}))
    else:
        _configure_logging(logging.WARNING)
        service = _one_shot_service(data_dir)
        templates = service.prompts.templates
        response = service.search(query, top_k=top_k, filters=args.filters, recency=args.recency, explain=explain)
    if as_json:
        click.echo(json.dumps(response.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        click.echo(render_passages(response.results, templates.cli))


cli.add_command(search)
cli.add_command(ask)


@cli.group("feedback")
def feedback_group() -> None:
    """Ratings given to answers in the chat page or with POST /v1/feedback."""


@feedback_group.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON Lines here (default: standard output).")
@click.option("--rating", type=click.Choice(["up", "down"]), default=None, help="Only this rating.")
@data_dir_option
@_friendly_errors
def feedback_export(output: Path | None, rating: str | None, data_dir: Path | None) -> None:
    """Export feedback as a JSON Lines evaluation set ({"id", "q", "any", "doc", "rating", ...} per line)."""
    from service.database import open_database
    from service.feedback import FeedbackStore

    settings = _settings(data_dir)
    store = FeedbackStore(open_database(settings.database_url, settings.data_dir))
    lines = [json.dumps(item, ensure_ascii=False) for item in store.export(rating)]  # type: ignore[arg-type]
    text = "".join(line + "\n" for line in lines)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(lines)} feedback items written to {output}", err=True)


@cli.group("eval")
def eval_group() -> None:
    """Measure retrieval (and later the reader) on public test collections."""


@eval_group.command("retrieval")
@click.option("--beir", "beir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A BEIR directory (corpus.jsonl, queries.jsonl, qrels/).")
@click.option("--split", default="test", show_default=True, help="BEIR qrels split to score.")
@click.option("--time", "time_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The TIME collection in SMART layout (TIME.ALL, TIME.QUE, TIME.REL).")
@click.option("--cranfield", "cranfield", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="The Cranfield collection in SMART layout (cran.all.1400, cran.qry, cranqrel).")
@click.option("--squad", "squad", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A SQuAD-format file (e.g. NewsQA): question -> chunk holding the answer.")
@click.option("--half", type=click.Choice(["dev", "test"]), default=None,
              help="With --squad: score only the dev (even) or test (odd) questions.")
@click.option("--level", type=click.Choice(["chunk", "document"]), default="chunk", show_default=True,
              help="With --squad: judge the chunk holding the answer, or the whole story.")
@click.option("--alpha", "alphas", type=float, multiple=True,
              help="Dense weight(s) of the weighted fusion to score (default: the configured one).")
@click.option("--doc-weight", "doc_weights", type=float, multiple=True,
              help="Whole-article share(s) of the BM25 signal to score (default: the configured one).")
@click.option("--dense-doc-weight", "dense_doc_weights", type=float, multiple=True,
              help="Article-centroid share(s) of the dense signal to score (default: the configured one).")
@click.option("--feedback-terms", "feedback_terms", type=int, multiple=True,
              help="Pseudo-relevance feedback word count(s) to score (default: the configured one).")
@click.option("--feedback-weight", "feedback_weights", type=float, multiple=True,
              help="Pseudo-relevance feedback weight(s) to score (default: the configured one).")
@click.option("--bm25", "bm25_params", type=(float, float), multiple=True, metavar="K1 B",
              help="Also score the hybrid grid with BM25 rebuilt with these k1 and b (repeatable).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the ingested collection here and reuse it next time (default: a temporary directory).")
@backend_options
@_friendly_errors
def eval_retrieval(beir: Path | None, split: str, time_dir: Path | None, cranfield: Path | None,
                   squad: Path | None, half: str | None,
                   level: str, alphas: tuple[float, ...], doc_weights: tuple[float, ...],
                   dense_doc_weights: tuple[float, ...], feedback_terms: tuple[int, ...],
                   feedback_weights: tuple[float, ...], bm25_params: tuple[tuple[float, float], ...],
                   report: Path | None, data_dir: Path | None) -> None:
    """nDCG@10, recall@5/10/100 and MRR@10 for lexical, dense, RRF and weighted hybrid retrieval."""
    import tempfile

    from service.eval_retrieval import (
        evaluate,
        format_report,
        load_beir,
        load_cranfield,
        load_squad_retrieval,
        load_time,
    )

    if sum(x is not None for x in (beir, time_dir, cranfield, squad)) != 1:
        raise click.UsageError("give exactly one of --beir DIR, --time DIR, --cranfield DIR, --squad FILE")
    source = beir or time_dir or cranfield or squad
    try:
        if beir is not None:
            collection = load_beir(beir, split)
        elif time_dir is not None:
            collection = load_time(time_dir)
        elif cranfield is not None:
            collection = load_cranfield(cranfield)
        else:
            assert squad is not None
            collection = load_squad_retrieval(squad, half, level)
    except (ValueError, KeyError, IndexError) as exc:  # a damaged or foreign file (json, ints, fields)
        raise click.ClickException(f"cannot read the collection in {source}: {type(exc).__name__}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="newsroom-qa-eval-") as tmp:
        service = _service(data_dir or Path(tmp), seed_if_empty=False)
        settings = service.settings
        from index.retrieval import RetrievalOptions

        grid = [RetrievalOptions(alpha=a, doc_weight=g, dense_doc_weight=d, feedback_terms=f, feedback_weight=w)
                for a in (alphas or [settings.fusion_alpha])
                for g in (doc_weights or [settings.lexical_doc_weight])
                for d in (dense_doc_weights or [settings.dense_doc_weight])
                for f in (feedback_terms or [settings.feedback_terms])
                for w in (feedback_weights or [settings.feedback_weight])]
        result = evaluate(service, collection, grid=grid, bm25_grid=list(bm25_params))
    click.echo(format_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2), encoding="utf-8")
        click.echo(f"report written to {report}", err=True)


reader_option = click.option("--reader", type=click.Choice(["trained", "transformers", "heuristic"]), default=None,
                             help="Reader to use (default: NEWSROOM_QA_READER, else the trained one).")
reader_model_option = click.option("--reader-model", default=None,
                                   help="With --reader transformers: a QA model's local path or hub id.")


@eval_group.command("reader")
@click.argument("squad_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gold-context", "mode", flag_value="gold", default=True,
              help="Give the reader the paragraph the question was written on (default).")
@click.option("--open", "mode", flag_value="open",
              help="End to end: store every paragraph of the file and answer from retrieval.")
@click.option("--split", "splits", type=click.Choice(["heldout", "tune", "train"]), multiple=True,
              help="Which fixed split(s) of the file to score (default: heldout, never trained or tuned on).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N questions.")
@reader_option
@reader_model_option
@click.option("--abstain-below", type=click.FloatRange(0, 1), default=None,
              help="Override the reader's abstention threshold.")
@click.option("--calibration", type=click.Choice(["gold", "open"]), default=None,
              help="Which of the reader's calibrations to score with (default: the service's, READER_CALIBRATION).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here (a reliability plot goes beside it as .png).")
@click.option("--per-question/--figures-only", default=True, show_default=True,
              help="Include every question's prediction in the report, or only the aggregate figures.")
@_friendly_errors
def eval_reader(squad_file: Path, mode: str, splits: tuple[str, ...], limit: int | None, reader: str | None,
                reader_model: str | None, abstain_below: float | None, calibration: str | None, report: Path | None,
                per_question: bool) -> None:
    """EM/F1 (official SQuAD normalisation), HasAns/NoAns, sentence accuracy, calibration and latency."""
    import tempfile

    from tqdm import tqdm

    from service.eval_reader import evaluate_reader, format_reader_report, reliability_plot
    from service.readers.squad_data import load_squad

    load_squad(squad_file)  # a malformed file fails here, before the models load
    with tempfile.TemporaryDirectory(prefix="newsroom-qa-eval-") as tmp:
        extra = {"reader_calibration": calibration} if calibration else {}
        service = _service(Path(tmp), seed_if_empty=False, reader=reader, reader_model=reader_model,
                           abstain_below=abstain_below, **extra)
        result = evaluate_reader(service, squad_file, mode="open" if mode == "open" else "gold",
                                 splits=tuple(splits) or ("heldout",), limit=limit,  # type: ignore[arg-type]
                                 progress=lambda it: tqdm(list(it), desc="questions", unit="q"))
    click.echo(format_reader_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        plot = reliability_plot(result, report.with_suffix(".png"))
        if not per_question:
            result.pop("questions")
        report.write_text(json.dumps(result, indent=2), encoding="utf-8")
        click.echo(f"report written to {report}, reliability plot to {plot}", err=True)


@cli.command("train-reader")
@click.argument("squad_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoints and logs; an interrupted run resumes from here.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the trained model (default: the package's bundled reader).")
@click.option("--base-model", default=None, help="Encoder to start from (default: the bundled all-MiniLM-L6-v2).")
@click.option("--epochs", type=click.FloatRange(min=0.01), default=3.0, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=1e-7), default=1e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-length", type=click.IntRange(min=64, max=512), default=384, show_default=True,
              help="Tokens per training window.")
@click.option("--warmup", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Share of the steps with a rising learning rate.")
@click.option("--oversample", "oversample", multiple=True, metavar="NAME=K",
              help="Repeat a data set's training questions K times (e.g. newsqa=3); NAME as in the file name.")
@click.option("--threads", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True)
@click.option("--skip-training", is_flag=True, help="Only export and calibrate the last checkpoint.")
@_friendly_errors
def train_reader_command(squad_files: tuple[Path, ...], run_dir: Path, export_dir: Path | None, base_model: str | None,
                         epochs: float, learning_rate: float, batch_size: int, max_length: int, warmup: float,
                         oversample: tuple[str, ...], threads: int, skip_training: bool) -> None:
    """Fine-tune a span reader on the train split of SQuAD-format files, then export and calibrate it.

    The tune split chooses the abstention threshold and calibration; the heldout split is left for
    'newsroom-qa eval reader'. Resumable: run the same command again after an interruption.
    """
    from tqdm import tqdm

    from index.embedding import bundled_model_path
    from service.readers.calibrate import calibrate_model
    from service.readers.model_card import write_model_card
    from service.readers.span_model import SpanModel
    from service.readers.squad_data import dataset_name, load_squad
    from service.readers.training import TrainConfig, export_model, train_reader
    from service.readers.transformer import BUNDLED_READER

    _quiet_libraries()
    repeat: dict[str, int] = {}
    for item in oversample:
        name, _, times = item.partition("=")
        if not times.isdigit() or int(times) < 1:
            raise click.BadParameter(f"expected NAME=K with K >= 1, got {item!r}", param_hint="--oversample")
        repeat[name] = int(times)
    data = "train split of " + ", ".join(
        f.name + (f" (x{repeat[n]})" if (n := dataset_name(f)) in repeat else "") for f in squad_files)
    checkpoint = run_dir / "checkpoint.pt"
    if not skip_training:
        examples = [ex for f in squad_files for ex in load_squad(f, ["train"]) * repeat.get(dataset_name(f), 1)]
        click.echo(f"training on {len(examples)} questions: {data}", err=True)
        config = TrainConfig(base_model=base_model or str(bundled_model_path(verify=True)), epochs=epochs,
                             learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                             stride=max_length // 3, warmup=warmup, threads=threads)
        with tqdm(desc="training", unit="step") as bar:
            def progress(step: int, total: int, loss: float) -> None:
                bar.total = total
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            checkpoint = train_reader(examples, config, run_dir, progress)
    elif not checkpoint.is_file():
        raise click.ClickException(f"no checkpoint in {run_dir}: train first")
    target = export_model(checkpoint, export_dir or BUNDLED_READER, data=data)
    click.echo(f"model written to {target}; calibrating on the tune split", err=True)
    calibration = calibrate_model(SpanModel(target), list(squad_files),
                                  progress=lambda it: tqdm(list(it), desc="calibrating", unit="q"))
    calibration.save(target)
    write_model_card(target, squad_files, calibration)
    click.echo(f"calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}, "
               f"abstain below {calibration.threshold}")


@cli.command("calibrate-reader")
@click.argument("squad_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Model directory to calibrate (default: the reader shipped with the package).")
@click.option("--open", "open_setting", is_flag=True,
              help="Refit over an archive, as the service reads (every paragraph of each file stored, questions "
                   "answered through retrieval): writes calibration-open.json, used with READER_CALIBRATION=open.")
@_friendly_errors
def calibrate_reader_command(squad_files: tuple[Path, ...], model_dir: Path | None, open_setting: bool) -> None:
    """Refit a reader's calibration and abstention threshold on the tune split (after changing how spans are
    ranked, or for a model trained elsewhere); rewrites calibration.json (or with --open calibration-open.json)
    and the model card."""
    from tqdm import tqdm

    from service.readers.calibrate import calibrate_model
    from service.readers.model_card import write_model_card
    from service.readers.span_model import SpanModel
    from service.readers.squad_data import load_squad
    from service.readers.transformer import BUNDLED_READER

    for path in squad_files:
        load_squad(path)  # a malformed file fails before the model loads
    target = model_dir or BUNDLED_READER
    _quiet_libraries()
    if open_setting:
        calibration = _calibrate_open(target, squad_files, bundled=model_dir is None)
        click.echo(f"open-setting calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}, "
                   f"abstain below {calibration.threshold}")
        return
    calibration = calibrate_model(SpanModel(target), list(squad_files),
                                  progress=lambda it: tqdm(list(it), desc="calibrating", unit="q"))
    calibration.save(target)
    if (target / "training.json").is_file():
        write_model_card(target, squad_files, calibration)
    click.echo(f"calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}, "
               f"abstain below {calibration.threshold}")


def _bar(items: Iterable[Any], desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(list(items), desc=desc, unit="q")


def _calibrate_open(target: Path, squad_files: tuple[Path, ...], bundled: bool) -> Calibration:
    """Answer each file's tune questions over an archive of all its paragraphs with no threshold, refit the gold
    calibration on what came back (``refit_open``) and save it beside the model as calibration-open.json."""
    import tempfile

    from service.eval_reader import evaluate_reader
    from service.readers.calibration import Calibration, refit_open

    base = Calibration.load(target, "gold")
    confidences: list[float | None] = []
    f1s: list[float] = []
    answerable: list[bool] = []
    for path in squad_files:
        with tempfile.TemporaryDirectory(prefix="newsroom-qa-calibrate-") as tmp:
            service = _service(Path(tmp), seed_if_empty=False, reader="trained" if bundled else "transformers",
                               reader_model=None if bundled else str(target), reader_calibration="gold",
                               abstain_below=0.0)
            service.reader.promoted_min = 0.0  # type: ignore[attr-defined]  # every answer the rules allow
            report = evaluate_reader(service, path, mode="open", splits=("tune",),
                                     progress=partial(_bar, desc=f"calibrating on {path.name}"))
        for q in report["questions"]:
            confidences.append(q["confidence"] if q["prediction"] else None)
            f1s.append(q["f1"])
            answerable.append(q["answerable"])
    names = ", ".join(p.name for p in squad_files)
    try:
        calibration = refit_open(base, confidences, f1s, answerable,
                                 fitted_on=f"open setting, tune split of {names} ({len(answerable)} q)")
    except ValueError as exc:  # too few questions, or none answered right
        raise click.ClickException(str(exc)) from exc
    calibration.save(target, "open")
    return calibration


def main() -> None:
    """Entry point of ``newsroom-qa``."""
    cli()


def ask_main() -> None:
    """Entry point of ``ask``: the same as ``newsroom-qa ask``."""
    _configure_logging(logging.WARNING)
    ask()
