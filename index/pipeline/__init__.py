"""Turning submitted articles into what is stored: parse files, clean scraped pages, split sentences, chunk with
character offsets, and run the whole pipeline in one process (``indexer``) or on Dask (``distributed``).
Imports ``index.embedding`` and the top-level models; never a storage backend."""
