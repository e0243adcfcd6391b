"""`newsroom-qa serve` as a real process: seeds an empty data dir, answers over HTTP, keeps data across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, FIXTURE_ARTICLES, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("newsroom-qa"))


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEWSROOM_QA_SEEDS_DIR": str(FIXTURE_ARTICLES), "NEWSROOM_QA_API_KEY": API_KEY}
    proc = subprocess.Popen([CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return wait_healthy(proc, port)


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """Wait until the served /healthz answers; the process's stderr in the failure if it exits first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("serve did not become healthy in 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def test_serve_seeds_answers_and_persists(tmp_path):
    if not Path(CLI).exists():
        pytest.skip("the newsroom-qa console script is not installed in this environment")
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(data, port)
    try:
        assert httpx.get(f"{url}/healthz").json()["documents"] == 2
        body = httpx.post(f"{url}/v1/ask", json={"question": "Who is the mayor of Vellmont?"}, timeout=60).json()
        assert body["answer"] == "Peter Amsel"
        httpx.post(f"{url}/v1/documents", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                   json={"documents": [{"id": "n1", "title": "Note", "text": "Added before the restart."}]}
                   ).raise_for_status()
    finally:
        stop(proc)
    proc = start(data, port)
    try:
        health = httpx.get(f"{url}/healthz").json()
        assert health["documents"] == 3  # seeds are not indexed twice, the added article is still there
        assert httpx.get(f"{url}/v1/documents/n1").json()["text"] == "Added before the restart."
    finally:
        stop(proc)
