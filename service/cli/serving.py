"""Running the service: the HTTP API (``serve``) and the Slack bot (``slack``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from service.cli.common import (
    _friendly_errors,
    _long_running,
    _quiet_libraries,
    _server_logging,
    _settings,
    _tune_malloc,
    _where,
    cli,
    data_dir_option,
)


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
    from service.answering.qa import QAService

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
    from service.slack.app import build_slack_app, require_slack_settings

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
