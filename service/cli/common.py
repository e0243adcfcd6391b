"""What every command shares: the ``newsroom-qa`` group, archive options, settings and service construction, and
one-line errors instead of tracebacks."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from index.errors import QAError

if TYPE_CHECKING:
    from service.answering.qa import QAService
    from service.settings import Settings


__all__ = ["_NOT_A_DATA_DIR", "_OVERRIDES", "F", "_configure_logging", "_friendly_errors", "_long_running",
           "_one_shot_service", "_quiet_libraries", "_remember", "_server_logging", "_service", "_settings",
           "_tune_malloc", "_where", "backend_options", "cli", "data_dir_option"]

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
    from service.answering.qa import QAService

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

