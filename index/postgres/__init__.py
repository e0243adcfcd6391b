"""The PostgreSQL + pgvector backend: the store, its schema and Alembic migrations, and the embedded server used
in development and tests. Implements ``index.archive``; imports only the top level of ``index``."""
