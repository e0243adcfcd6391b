"""Stateless replicas: two real `newsroom-qa serve` processes on loopback sharing one PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, FIXTURE_ARTICLES, free_port
from tests.service.test_serve import stop, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("newsroom-qa"))


def replica(dsn: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEWSROOM_QA_SEEDS_DIR": str(FIXTURE_ARTICLES), "NEWSROOM_QA_API_KEY": API_KEY,
           "NEWSROOM_QA_BACKEND": "postgres", "NEWSROOM_QA_DATABASE_URL": dsn, "NEWSROOM_QA_LOG_FORMAT": "text"}
    return subprocess.Popen([CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_document_added_through_one_replica_is_answered_by_the_other(pg_dsn, tmp_path):
    if not Path(CLI).exists():
        pytest.skip("the newsroom-qa console script is not installed in this environment")
    ports = free_port(), free_port()
    # Started together: both migrate and seed the same empty database (the advisory lock makes them take turns).
    first: subprocess.Popen[bytes] | None = replica(pg_dsn, ports[0], tmp_path / "a")
    second = replica(pg_dsn, ports[1], tmp_path / "b")
    a, b = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        assert first is not None
        wait_healthy(first, ports[0])
        wait_healthy(second, ports[1])
        assert httpx.get(f"{a}/healthz").json()["documents"] == httpx.get(f"{b}/healthz").json()["documents"] == 2
        doc = {"id": "r1", "title": "Ferry strike ends",
               "text": "The ferry strike in Vellmont ended on Tuesday. Union leader Mara Quist signed the deal."}
        httpx.post(f"{a}/v1/documents", json={"documents": [doc]}, headers={"Authorization": f"Bearer {API_KEY}"},
                   timeout=120).raise_for_status()
        body = httpx.post(f"{b}/v1/ask", json={"question": "Who signed the deal that ended the ferry strike?"},
                          timeout=120).json()
        assert body["answer"] == "Mara Quist" and body["citations"][0]["doc_id"] == "r1"
        chat = httpx.post(f"{b}/v1/chat", json={"message": "Who signed the deal that ended the ferry strike?"},
                          timeout=120).json()
        # The conversation lives in PostgreSQL too: the other replica lists it.
        listed = httpx.get(f"{a}/v1/conversations", timeout=30).json()
        assert chat["conversation_id"] in [c["id"] for c in listed["conversations"]]
        stop(first)
        first = None
        again = httpx.post(f"{b}/v1/ask", json={"question": "Who is the mayor of Vellmont?"}, timeout=120).json()
        assert again["answer"] == "Peter Amsel"
        assert httpx.get(f"{b}/v1/documents/r1").json()["title"] == "Ferry strike ends"
    finally:
        for proc in (first, second):
            if proc is not None:
                stop(proc)
