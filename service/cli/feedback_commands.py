"""``newsroom-qa feedback export``: the readers' ratings as JSON lines."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from service.cli.common import _friendly_errors, _settings, cli, data_dir_option


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
    from service.conversation.database import open_database
    from service.conversation.feedback import FeedbackStore

    settings = _settings(data_dir)
    store = FeedbackStore(open_database(settings.database_url, settings.data_dir))
    lines = [json.dumps(item, ensure_ascii=False) for item in store.export(rating)]  # type: ignore[arg-type]
    text = "".join(line + "\n" for line in lines)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(lines)} feedback items written to {output}", err=True)
