"""Creates and migrates the postgres backend's schema (Alembic scripts in ``index/postgres/migrations``).

Every service process calls ``migrate`` at start-up; a session advisory lock makes concurrent replicas take turns,
so exactly one applies each new version and the others find it done. The database remembers the embedding model
it was built with, and a process with another model is refused, as with a data directory.
"""

from __future__ import annotations

from pathlib import Path

from index.errors import DataDirError, ModelMismatch

__all__ = ["SCHEMA_HEAD", "migrate", "sqlalchemy_url"]

SCHEMA_HEAD = "0004"
_LOCK = 7_265_011  # advisory lock key: "newsroom-qa migrations"
_SCRIPTS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(dsn: str) -> str:
    """``postgresql://...`` as SQLAlchemy's URL for psycopg 3 (its default driver would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    return dsn


def migrate(dsn: str, model_id: str, dimension: int, revision: str = "head") -> None:
    """Bring the schema at ``dsn`` to the newest version (or ``revision``, for tests of older databases) and check
    it holds vectors of this model.

    :raises DataDirError: the server cannot be reached or the schema cannot be applied.
    :raises ModelMismatch: the database was built with another embedding model.
    """
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["dimension"] = dimension
    engine = create_engine(sqlalchemy_url(dsn), pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
                stored: dict[str, str] = {str(k): str(v) for k, v in conn.execute(text("SELECT key, value FROM meta"))}
                if not stored:
                    conn.execute(text("INSERT INTO meta VALUES ('model_id', :m), ('dimension', :d) "
                                      "ON CONFLICT (key) DO NOTHING"), {"m": model_id, "d": str(dimension)})
                    conn.commit()
                    stored = {"model_id": model_id, "dimension": str(dimension)}
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK})
                conn.commit()
    except SQLAlchemyError as exc:
        raise DataDirError(f"cannot prepare the PostgreSQL database: {exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if stored.get("model_id") != model_id or stored.get("dimension") != str(dimension):
        raise ModelMismatch(
            f"the PostgreSQL database was built with embedding model {stored.get('model_id')!r} "
            f"({stored.get('dimension')} dimensions) but this service uses {model_id!r} ({dimension}); set "
            f"NEWSROOM_QA_EMBEDDING_MODEL to {stored.get('model_id')!r}, or use another database")
