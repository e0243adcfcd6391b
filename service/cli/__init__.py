"""Command line: ``newsroom-qa serve|slack|index|ask|search|feedback|eval|train-reader|calibrate-reader`` and the
``ask`` shortcut, one module per command group.

Each command parses its arguments, calls ``QAService`` (or a running server through httpx) and prints the result;
errors are printed as one line and exit with code 1, never as a traceback.
"""

from __future__ import annotations

import logging

from service.cli import evaluation, feedback_commands, index_commands, reader_training, serving  # noqa: F401
from service.cli.asking import ask, search
from service.cli.common import _configure_logging, cli

__all__ = ["ask", "ask_main", "cli", "main", "search"]


def main() -> None:
    """Entry point of ``newsroom-qa``."""
    cli()


def ask_main() -> None:
    """Entry point of ``ask``: the same as ``newsroom-qa ask``."""
    _configure_logging(logging.WARNING)
    ask()
