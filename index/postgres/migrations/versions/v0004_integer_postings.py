"""Postings keyed by integers: a word's id in ``lexemes`` and an article's number in ``documents``.

The postings held each word and article id as text, compared under the database's collation (libc C.UTF-8 here,
no fast path): building the four posting B-trees was 22.7 s of a 78 s bulk load of 100k chunks. With integer keys
a posting is a row of fixed-width numbers, which a bulk load sends as one binary COPY buffer laid out by NumPy
(``index.postgres.rows``) instead of formatting 13.4 million lines of text, and the B-trees sort integers: the
same load took 62 s (its rows also written frozen), of which the four B-trees 13.3 s and the postings' COPY 6.1 s
instead of 10.9 s (2-core AMD EPYC Zen 4). ``lexemes`` gives each word an ``id`` (per collection) and
``documents`` each article a ``docno``; searches join the query's words to their ids once, and deletes count a
word's postings down by id.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE SEQUENCE documents_docno_seq AS integer;
        ALTER TABLE documents ADD COLUMN docno integer NOT NULL DEFAULT nextval('documents_docno_seq');
        ALTER SEQUENCE documents_docno_seq OWNED BY documents.docno;
        CREATE UNIQUE INDEX documents_docno ON documents (docno);
        CREATE SEQUENCE lexemes_id_seq AS integer;
        ALTER TABLE lexemes ADD COLUMN id integer NOT NULL DEFAULT nextval('lexemes_id_seq');
        ALTER SEQUENCE lexemes_id_seq OWNED BY lexemes.id;
        CREATE UNIQUE INDEX lexemes_id ON lexemes (id);

        CREATE TABLE chunk_postings (rowid bigint NOT NULL, term integer NOT NULL, docno integer NOT NULL,
                                     tf integer NOT NULL, dl integer NOT NULL, impact real NOT NULL);
        INSERT INTO chunk_postings SELECT p.rowid, l.id, d.docno, p.tf, p.dl, p.impact FROM chunk_terms p
            JOIN lexemes l ON l.collection = 'c' AND l.lexeme = p.lexeme JOIN documents d ON d.id = p.doc_id;
        CREATE TABLE doc_postings (docno integer NOT NULL, term integer NOT NULL, tf integer NOT NULL,
                                   dl integer NOT NULL, impact real NOT NULL);
        INSERT INTO doc_postings SELECT d.docno, l.id, p.tf, p.dl, p.impact FROM doc_terms p
            JOIN lexemes l ON l.collection = 'd' AND l.lexeme = p.lexeme JOIN documents d ON d.id = p.doc_id;
        DROP TABLE chunk_terms;
        DROP TABLE doc_terms;
        ALTER TABLE chunk_postings RENAME TO chunk_terms;
        ALTER TABLE doc_postings RENAME TO doc_terms;
        ALTER TABLE chunk_terms ADD CONSTRAINT chunk_terms_pkey PRIMARY KEY (rowid, term) INCLUDE (tf, dl);
        ALTER TABLE doc_terms ADD CONSTRAINT doc_terms_pkey PRIMARY KEY (docno, term) INCLUDE (tf, dl);
        CREATE INDEX chunk_terms_impact ON chunk_terms (term, impact DESC) INCLUDE (rowid, docno, tf, dl);
        CREATE INDEX doc_terms_impact ON doc_terms (term, impact DESC) INCLUDE (docno, tf, dl);
        ANALYZE documents, lexemes, chunk_terms, doc_terms;
    """)


def downgrade() -> None:
    raise NotImplementedError("0004 replaced the postings tables; restore a backup taken before it")
