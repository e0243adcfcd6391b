"""Reading a text/event-stream body in tests, by the SSE rules (a blank line ends an event)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def sse(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a text/event-stream body."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
