"""Postings for BM25: (lexeme, row, term frequency, length) per chunk (with its article) and per article.

PostgreSQL's ``ts_rank`` has no idf, so BM25 is computed in SQL. Reading term frequencies out of every matching
row's tsvector (``unnest``) costs a row per lexeme of every matching chunk; postings keyed by lexeme hold just the
query words' entries, so a query reads one index range per word. They are derived from the tsvectors (the lexical
source of truth) at every write, and backfilled here from the rows already stored.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE chunk_terms (
            lexeme text COLLATE "C" NOT NULL, rowid bigint NOT NULL REFERENCES chunks (rowid) ON DELETE CASCADE,
            doc_id text NOT NULL, tf integer NOT NULL, dl integer NOT NULL, PRIMARY KEY (lexeme, rowid));
        CREATE INDEX chunk_terms_rowid ON chunk_terms (rowid);
        CREATE TABLE doc_terms (
            lexeme text COLLATE "C" NOT NULL, doc_id text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            tf integer NOT NULL, dl integer NOT NULL, PRIMARY KEY (lexeme, doc_id));
        CREATE INDEX doc_terms_doc ON doc_terms (doc_id);
        INSERT INTO chunk_terms SELECT u.lexeme, c.rowid, c.doc_id, coalesce(array_length(u.positions, 1), 1),
            c.n_terms FROM chunks c, unnest(c.tsv) u;
        INSERT INTO doc_terms SELECT u.lexeme, d.id, coalesce(array_length(u.positions, 1), 1), d.n_terms
            FROM documents d, unnest(d.tsv) u;
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunk_terms, doc_terms")
