"""Scoring the reader and retrieval on public QA and IR sets (``newsroom-qa eval``). Imports
``service.answering`` and ``index``; never a surface."""
