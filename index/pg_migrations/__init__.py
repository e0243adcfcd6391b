"""Versioned schema of the postgres backend (Alembic scripts, run by ``index.pg_schema.migrate``)."""
