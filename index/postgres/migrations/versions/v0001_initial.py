"""Initial schema: documents, sentences, chunks with a pgvector column (HNSW) and full text (tsvector, GIN).

BM25 needs document frequencies that PostgreSQL does not keep, so ``lexemes`` holds them per collection
(``c`` = chunks, ``d`` = whole articles), maintained by every write in the same transaction.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    config = op.get_context().config
    assert config is not None  # index.postgres.schema.migrate passes one
    dimension = int(config.attributes["dimension"])
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(f"""
        CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE documents (
            id text PRIMARY KEY, title text NOT NULL, text text NOT NULL, source text, published date, url text,
            n_chunks integer NOT NULL, added_at timestamptz NOT NULL DEFAULT now(),
            tsv tsvector NOT NULL, n_terms integer NOT NULL, centroid vector({dimension}));
        CREATE INDEX documents_source ON documents (source);
        CREATE INDEX documents_published ON documents (published);
        CREATE INDEX documents_tsv ON documents USING gin (tsv);
        CREATE TABLE sentences (
            doc_id text NOT NULL REFERENCES documents (id) ON DELETE CASCADE, seq integer NOT NULL,
            start_at integer NOT NULL, end_at integer NOT NULL, PRIMARY KEY (doc_id, seq));
        CREATE TABLE chunks (
            rowid bigserial PRIMARY KEY, chunk_id text NOT NULL UNIQUE,
            doc_id text NOT NULL REFERENCES documents (id) ON DELETE CASCADE, seq integer NOT NULL,
            start_at integer NOT NULL, end_at integer NOT NULL,
            embedding vector({dimension}) NOT NULL, tsv tsvector NOT NULL, n_terms integer NOT NULL);
        CREATE INDEX chunks_doc ON chunks (doc_id);
        CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
        CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops)
            WITH (m = 16, ef_construction = 64);
        CREATE TABLE lexemes (
            collection char(1) NOT NULL, lexeme text COLLATE "C" NOT NULL, df integer NOT NULL,
            PRIMARY KEY (collection, lexeme));
        CREATE TABLE totals (
            collection char(1) PRIMARY KEY, n bigint NOT NULL, terms bigint NOT NULL);
        INSERT INTO totals VALUES ('c', 0, 0), ('d', 0, 0);
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS totals, lexemes, chunks, sentences, documents, meta")
