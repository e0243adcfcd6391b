"""A server shutting down lets go of its PostgreSQL connections (the archive's pool and the conversation database's)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import LiveServer, make_settings

psycopg = pytest.importorskip("psycopg")


def _connections(admin_dsn: str, database: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (database,)).fetchone()
    return int(row[0]) if row else 0


def test_a_server_closes_its_database_pools_when_it_stops(tmp_path, pg_server, pg_dsn):
    """In one process (as uvicorn's workers, or an app embedded in a larger one): without closing, the pools'
    connections outlive the server that opened them."""
    database = pg_dsn.rsplit("/", 1)[1]
    admin = pg_dsn.rsplit("/", 1)[0] + "/postgres"
    settings = make_settings(tmp_path / "data", backend="postgres", database_url=pg_dsn, reader="heuristic",
                             seeds_dir=tmp_path / "no-seeds")
    with LiveServer(settings=settings) as server:
        r = httpx.post(f"{server.url}/v1/search", json={"query": "harbour", "top_k": 1}, timeout=60)
        assert r.status_code == 200, r.text
        assert _connections(admin, database) >= 1  # the archive's pool (and the chat database's) are open
    assert server.server.should_exit and not server.thread.is_alive()
    deadline = time.monotonic() + 10  # a backend leaves pg_stat_activity moments after its client hangs up
    while _connections(admin, database) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _connections(admin, database) == 0
