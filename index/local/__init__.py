"""The data-directory backend: immutable segments (SQLite, FAISS, term counts), generations, merges, BM25 over
segments, memory mapping, verify and repair. Implements ``index.archive``; imports only the top level of ``index``."""
