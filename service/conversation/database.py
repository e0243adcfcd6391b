"""The relational store of the chat side: conversations, their turns and answer feedback.

SQLAlchemy Core, so the same tables live in SQLite in the data dir by default and in any server SQLAlchemy speaks
(PostgreSQL for the scale-out backend) by changing one URL. The article index itself stays in ``index/``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from index.errors import DataDirError
from index.postgres.schema import sqlalchemy_url

__all__ = ["conversations", "feedback", "metadata", "open_database", "turns"]

metadata = MetaData()

conversations = Table(
    "conversations", metadata,
    Column("id", String(128), primary_key=True),
    Column("title", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

turns = Table(
    "turns", metadata,
    Column("conversation_id", String(128), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("message", Text, nullable=False),
    Column("resolved_question", Text, nullable=False),
    Column("response", Text, nullable=False),  # the AnswerResponse as JSON: what the user was shown
    Column("created", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rating", String(8), nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=True),
    Column("citations", Text, nullable=False),  # JSON list of Citation
    Column("conversation_id", String(128), nullable=True),
    Column("turn", Integer, nullable=True),
    Column("comment", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
)
Index("ix_conversations_updated", conversations.c.updated)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL: readers never block the writer; foreign keys: deleting a conversation deletes its turns.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(unparseable database URL)"


def open_database(url: str | None, data_dir: Path) -> Engine:
    """Connect to ``url`` (default: ``sqlite:///<data_dir>/chat.sqlite3``) and create the tables if missing."""
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{data_dir / 'chat.sqlite3'}"
    url = sqlalchemy_url(url)  # postgresql:// means psycopg 3 here (SQLAlchemy's default driver is psycopg2)
    try:
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            metadata.create_all(engine)
        else:
            with engine.begin() as conn:  # replicas starting together take turns creating the tables
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7265013)"))
                metadata.create_all(conn)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise DataDirError(f"cannot open the conversation database {_shown(url)}: {exc}") from exc
    return engine
