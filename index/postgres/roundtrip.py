"""Several statements in one network round trip: psycopg's pipeline mode, which sends them all before reading
any reply. A search's latency on a remote database is mostly round trips; this is how it pays for one."""

from __future__ import annotations

from typing import Any

__all__ = ["pipelined"]


def pipelined(cur: Any, statements: list[tuple[str, Any]], isolation: str | None = None) -> list[list[Any]]:
    """Run ``statements`` in one round trip (psycopg's pipeline mode) and return each one's rows; with
    ``isolation``, inside one read-only transaction of that level."""
    conn = cur.connection
    cursors = [conn.cursor() for _ in statements]
    with conn.pipeline():
        if isolation:
            cur.execute(f"BEGIN ISOLATION LEVEL {isolation} READ ONLY")
        for c, (sql, params) in zip(cursors, statements, strict=True):
            c.execute(sql, params)
        if isolation:
            cur.execute("COMMIT")
    return [c.fetchall() for c in cursors]
