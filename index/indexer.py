"""The ingestion pipeline: clean -> split sentences -> chunk -> embed -> store, for a batch of articles."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pydantic import BaseModel

from index.chunking import chunk_document
from index.cleaning import DebrisRules, clean_text
from index.embedding import Embedder
from index.errors import InvalidInput
from index.models import Document, DocumentIn
from index.sentences import split_sentences
from index.store import DocumentWrite, Store

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["AddedDocument", "Indexer", "derive_doc_id"]


class AddedDocument(BaseModel):
    """What indexing did with one article."""

    id: str
    title: str
    chunks: int
    replaced: bool


def derive_doc_id(doc: DocumentIn) -> str:
    """A stable id for an article submitted without one: the same title and text always get the same id."""
    digest = hashlib.sha256(f"{doc.title}\n{doc.text}".encode()).hexdigest()
    return f"doc-{digest[:16]}"


class Indexer:
    """Turns submitted articles into stored documents, chunks and vectors, in one atomic write per batch."""

    def __init__(self, store: Store, embedder: Embedder, nlp: Language, rules: DebrisRules,
                 chunk_max_chars: int = 800, chunk_overlap_sentences: int = 1) -> None:
        self.store = store
        self.embedder = embedder
        self.nlp = nlp
        self.rules = rules
        self.chunk_max_chars = chunk_max_chars
        self.chunk_overlap_sentences = chunk_overlap_sentences

    def prepare(self, doc: DocumentIn, show_progress: bool = False) -> DocumentWrite:
        """Clean, split, chunk and embed one article (no storage yet)."""
        doc_id = doc.id or derive_doc_id(doc)
        text = clean_text(doc.text, self.rules)
        if not text:
            raise InvalidInput(f"document {doc_id!r}: no article text left after removing web-page debris")
        title = clean_text(doc.title, self.rules).replace("\n", " ") or doc_id
        sentences = split_sentences(self.nlp, text)
        chunks = chunk_document(doc_id, text, sentences, self.chunk_max_chars, self.chunk_overlap_sentences)
        # The title travels with every chunk into the embedding: a passage is found by its headline too.
        vectors = self.embedder.embed([f"{title}. {c.text}" for c in chunks], show_progress=show_progress)
        document = Document(id=doc_id, title=title, text=text, source=doc.source, published=doc.published,
                            url=doc.url, n_chunks=len(chunks))
        return DocumentWrite(document=document, sentences=sentences, chunks=chunks, vectors=vectors)

    def add(self, docs: list[DocumentIn], show_progress: bool = False) -> list[AddedDocument]:
        """Index ``docs`` and store them together; an id already stored is replaced.

        :raises InvalidInput: if any article is unusable; then nothing is stored.
        """
        from tqdm import tqdm

        writes = [self.prepare(d) for d in tqdm(docs, desc="indexing", unit="doc", disable=not show_progress)]
        ids = [w.document.id for w in writes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvalidInput(f"the same document id appears more than once in one request: {duplicates}")
        snapshot = self.store.snapshot()
        existing = {i for i in ids if snapshot.has_document(i)}
        self.store.write(upserts=writes)
        return [AddedDocument(id=w.document.id, title=w.document.title, chunks=len(w.chunks),
                              replaced=w.document.id in existing) for w in writes]

    def remove(self, doc_ids: list[str]) -> None:
        """Delete documents by id, all or none.

        :raises DocumentNotFound: if one of them is not stored.
        """
        self.store.write(deletes=doc_ids)
