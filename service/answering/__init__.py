"""Answering a question from the archive: retrieval through ``index``, the readers, the answer's core, grounding,
attribution and what other sources say. Imports ``index`` and the top level of ``service``; never a surface or
the conversation layer."""
