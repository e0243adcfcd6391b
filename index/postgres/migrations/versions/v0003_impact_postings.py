"""Impact-ordered postings: BM25 whose cost does not grow with the postings of common words.

Each posting gets ``impact``, its BM25 term-frequency factor ``tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with
the collection's average length when it was written, and an index on ``(lexeme, impact DESC)`` holding what
scoring reads, so a query takes the best postings of each word from the front of one index range and stops
(``index.postgres.lexical``); candidates are then scored exactly by primary-key probes. The primary keys turn
around to ``(rowid, lexeme)`` and ``(doc_id, lexeme)``, carrying ``tf`` and ``dl``: one index serves both the
probes (index-only) and a write's deletes of an article's postings, which the separate ``rowid`` and ``doc_id``
indexes did. The postings' foreign keys go (a bulk load writes millions of postings, each checked by a trigger).
The ``tsvector`` columns and their GIN indexes, which nothing reads since 0002, are dropped: the postings are the
lexical source of truth, written from the same term counts.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The defaults of Settings.bm25_k1 / bm25_b: the order of postings by impact barely moves with them, and scores are
# always computed exactly with the configured values.
K1, B = 1.2, 0.75


def upgrade() -> None:
    for table, collection in (("chunk_terms", "c"), ("doc_terms", "d")):
        op.execute(f"""
            ALTER TABLE {table} ADD COLUMN impact real;
            UPDATE {table} p SET impact = p.tf / (p.tf + {K1} * (1 - {B} + {B} * p.dl / greatest(
                (SELECT t.terms::float8 / greatest(t.n, 1) FROM totals t WHERE t.collection = '{collection}'), 1)));
            ALTER TABLE {table} ALTER COLUMN impact SET NOT NULL;
        """)
    op.execute("""
        ALTER TABLE chunk_terms DROP CONSTRAINT IF EXISTS chunk_terms_rowid_fkey;
        ALTER TABLE doc_terms DROP CONSTRAINT IF EXISTS doc_terms_doc_id_fkey;
        ALTER TABLE chunk_terms DROP CONSTRAINT chunk_terms_pkey, ADD PRIMARY KEY (rowid, lexeme) INCLUDE (tf, dl);
        ALTER TABLE doc_terms DROP CONSTRAINT doc_terms_pkey, ADD PRIMARY KEY (doc_id, lexeme) INCLUDE (tf, dl);
        DROP INDEX IF EXISTS chunk_terms_rowid;
        DROP INDEX IF EXISTS doc_terms_doc;
        CREATE INDEX chunk_terms_impact ON chunk_terms (lexeme, impact DESC) INCLUDE (rowid, doc_id, tf, dl);
        CREATE INDEX doc_terms_impact ON doc_terms (lexeme, impact DESC) INCLUDE (doc_id, tf, dl);
        DROP INDEX IF EXISTS chunks_tsv;
        DROP INDEX IF EXISTS documents_tsv;
        ALTER TABLE chunks DROP COLUMN tsv;
        ALTER TABLE documents DROP COLUMN tsv;
        ANALYZE totals, meta;  -- searches join them; autovacuum would analyze them only after 50 changed rows
    """)


def downgrade() -> None:
    raise NotImplementedError("0003 dropped the tsvector columns; restore a backup taken before it")
