"""A local stand-in for Slack's Web API (https://api.slack.com/web): the one part of Slack that cannot run here.

It speaks the real protocol the bot's ``slack_sdk.WebClient`` uses (POST ``/api/<method>``, form or JSON bodies,
``{"ok": true, ...}`` answers) and records every call, plus posts to ``response_url`` addresses under
``/response/``, so tests can assert on the exact Block Kit payloads the bot sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

BOT_USER_ID = "UNEWSBOT"


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or "{}")
                else:
                    body = dict(parse_qsl(raw))
                    for key in ("blocks", "attachments"):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                name = self.path.removeprefix("/api/") if self.path.startswith("/api/") else self.path
                body["_auth"] = self.headers.get("Authorization")
                stub.record(name, body)
                reply = json.dumps(stub.reply(name, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, name: str, body: dict[str, Any]) -> None:
        with self._changed:
            self.calls.append((name, body))
            self._changed.notify_all()

    @staticmethod
    def reply(name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name == "auth.test":
            return {"ok": True, "url": "https://newsroom.slack.example/", "team": "Newsroom", "user": "newsroom-qa",
                    "team_id": "T0NEWS", "user_id": BOT_USER_ID, "bot_id": "B0NEWS", "is_enterprise_install": False}
        if name == "chat.postMessage":
            return {"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}",
                    "message": {"text": body.get("text"), "thread_ts": body.get("thread_ts")}}
        if name == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{time.time():.6f}"}
        return {"ok": True}

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for n, body in self.calls if n == name]

    def wait_for(self, name: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The first ``count`` calls of ``name``, waiting for the bot's background listeners to make them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [body for n, body in self.calls if n == name]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} {name} call(s), got {len(found)}: {self.calls}")
                self._changed.wait(left)

    def __enter__(self) -> SlackStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def replies_in(stub: SlackStub, thread_ts: str, count: int) -> list[dict[str, Any]]:
    """The bot's messages in a thread, once ``count`` have arrived (or what there is after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        found = [m for m in stub.named("chat.postMessage") if m.get("thread_ts") == thread_ts]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
