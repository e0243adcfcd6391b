"""Documents, chunks, embeddings and the archive: everything newsroom-qa keeps on disk. ``pipeline/`` prepares
articles, ``embedding/`` embeds them, ``local/`` and ``postgres/`` store them behind ``archive.py``; ``retrieval.py``
searches either. Never imports ``service``."""
