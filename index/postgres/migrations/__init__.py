"""Versioned schema of the postgres backend (Alembic scripts, run by ``index.postgres.schema.migrate``)."""
