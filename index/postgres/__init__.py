"""The PostgreSQL + pgvector backend: the store (``store``: writes, pooled connections, retries; ``rows``: COPY and
bulk loads), what a request reads (``snapshot``, ``candidates``, ``lexical``, ``filters``, ``roundtrip``), HNSW
settings (``tuning``), the schema and its Alembic migrations, and the embedded server used in development and
tests. Implements ``index.archive``; imports only the top level of ``index``."""
