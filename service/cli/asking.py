"""``ask`` and ``search``: through a running service (httpx) when there is one, else in-process."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel

from index.models import Filters
from service.schemas import Recency

if TYPE_CHECKING:
    pass

from service.cli.common import (
    _OVERRIDES,
    F,
    _configure_logging,
    _friendly_errors,
    _one_shot_service,
    _settings,
    cli,
    data_dir_option,
)


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
