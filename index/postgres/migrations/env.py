"""Alembic environment: migrations run on the connection ``index.postgres.schema.migrate`` passes in (no
alembic.ini)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="newsroom_qa_schema_version", transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
