"""A streaming read replica (pg_basebackup -R): queries are routed to it, writes go to the primary only."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.index.test_pg_store import DIM, corpus

psycopg = pytest.importorskip("psycopg")


def test_reads_go_to_the_replica_which_follows_the_primary_and_refuses_writes(pg_server, pg_dsn):
    from index.postgres.local_server import LocalPostgres
    from index.postgres.store import PgStore

    root = Path(tempfile.mkdtemp(prefix="newsroom-qa-replica-"))
    replica = LocalPostgres.start(root, replica_of=pg_server)
    try:
        read_dsn = pg_dsn.replace(f":{pg_server.port}/", f":{replica.port}/")
        store = PgStore(pg_dsn, "m", DIM, read_dsn=read_dsn)
        store.write(upserts=corpus(5))
        deadline = time.monotonic() + 30
        while not store.snapshot().has_document("a4"):  # replication is asynchronous: wait for it
            assert time.monotonic() < deadline, "the replica did not catch up in 30 s"
            time.sleep(0.1)
        served_by = store.read(lambda cur: cur.execute("SELECT pg_is_in_recovery()").fetchone()[0])
        assert served_by is True  # reads were answered by the standby
        snap = store.snapshot()
        assert snap.passages(snap.lexical_query("harbour budget").search(3))
        with psycopg.connect(read_dsn) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM documents")
        store.write(deletes=["a0"])  # writes still go to the primary
        store.close()
    finally:
        replica.stop()
        shutil.rmtree(root, ignore_errors=True)
