"""The ingestion pipeline: clean -> split sentences -> chunk -> embed -> store, for a batch of articles."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING

from index.archive import Archive
from index.embedding.embedder import Embedder
from index.errors import InvalidInput
from index.models import AddedDocument, Chunk, Document, DocumentIn, DocumentWrite, Sentence
from index.pipeline.chunking import chunk_document
from index.pipeline.cleaning import DebrisRules, clean_text, headline
from index.pipeline.sentences import split_sentences

if TYPE_CHECKING:
    from spacy.language import Language

AnalysedArticle = tuple[Document, list[Sentence], list[Chunk]]  # cleaned, split and chunked, not yet embedded

__all__ = ["AddedDocument", "AnalysedArticle", "DocumentPipeline", "Indexer", "derive_doc_id", "fingerprint"]


def fingerprint(doc: Document) -> str:
    """What makes a stored document the same as a new one (ids aside): title, text and metadata."""
    fields = (doc.title, doc.text, doc.source, doc.published.isoformat() if doc.published else "", doc.url or "")
    return hashlib.sha256("\x1f".join(f or "" for f in fields).encode()).hexdigest()


def _same(stored: Document | None, new: Document) -> bool:
    return stored is not None and fingerprint(stored) == fingerprint(new)


def _refuse_repeated_ids(docs: list[DocumentIn]) -> None:
    """One request names each id once: two articles given one id would leave which one is stored to their order."""
    duplicates = sorted(i for i, n in Counter(d.id for d in docs if d.id).items() if n > 1)
    if duplicates:
        raise InvalidInput(f"the same document id appears more than once in one request: {duplicates}")


def _last_of_each_id(analysed: list[AnalysedArticle]) -> list[AnalysedArticle]:
    """One article per id, the last given (as the stores keep the last of an id in one write): two copies of an
    article submitted without ids get the same derived id, and embedding both would be wasted work."""
    return list({doc.id: (doc, sentences, chunks) for doc, sentences, chunks in analysed}.values())


def derive_doc_id(doc: DocumentIn) -> str:
    """A stable id for an article submitted without one: the same title and text always get the same id."""
    digest = hashlib.sha256(f"{doc.title}\n{doc.text}".encode()).hexdigest()
    return f"doc-{digest[:16]}"


class DocumentPipeline:
    """Clean -> sentences -> chunks -> vectors for articles, without storing them: what an ingestion worker runs
    (``Indexer`` in one process, ``index.pipeline.distributed`` on Dask workers)."""

    def __init__(self, embedder: Embedder, nlp: Language, rules: DebrisRules, chunk_max_chars: int = 800,
                 chunk_overlap_sentences: int = 1) -> None:
        self.embedder = embedder
        self.nlp = nlp
        self.rules = rules
        self.chunk_max_chars = chunk_max_chars
        self.chunk_overlap_sentences = chunk_overlap_sentences

    def analyse(self, doc: DocumentIn) -> AnalysedArticle:
        """Clean, split and chunk one article (no embedding, no storage)."""
        doc_id = doc.id or derive_doc_id(doc)
        text = clean_text(doc.text, self.rules)
        if not text:
            raise InvalidInput(f"document {doc_id!r}: no article text left after removing web-page debris")
        # A title taken from a page's first line may be debris ("Accessibility links"): then the headline is the
        # first line left after cleaning.
        title = clean_text(doc.title, self.rules).replace("\n", " ") or headline(text) or doc_id
        sentences = split_sentences(self.nlp, text)
        chunks = chunk_document(doc_id, text, sentences, self.chunk_max_chars, self.chunk_overlap_sentences)
        document = Document(id=doc_id, title=title, text=text, source=doc.source, published=doc.published,
                            url=doc.url, n_chunks=len(chunks))
        return document, sentences, chunks

    def analyse_many(self, docs: list[DocumentIn],
                     show_progress: bool = False) -> list[AnalysedArticle]:
        """``analyse`` for each article, with a progress bar."""
        from tqdm import tqdm

        return [self.analyse(d) for d in tqdm(docs, desc="analysing", unit="doc", disable=not show_progress)]

    def prepare(self, docs: list[DocumentIn], show_progress: bool = False) -> list[DocumentWrite]:
        """Analyse articles, then embed all their chunks in large batches (much faster than per article)."""
        return self.embed_analysed(self.analyse_many(docs, show_progress), show_progress)

    def embed_analysed(self, analysed: list[AnalysedArticle],
                       show_progress: bool = False) -> list[DocumentWrite]:
        # The title travels with every chunk into the embedding: a passage is found by its headline too.
        texts = [f"{doc.title}. {c.text}" for doc, _, chunks in analysed for c in chunks]
        vectors = self.embedder.embed(texts, show_progress=show_progress)
        writes, offset = [], 0
        for doc, sentences, chunks in analysed:
            writes.append(DocumentWrite(document=doc, sentences=sentences, chunks=chunks,
                                        vectors=vectors[offset:offset + len(chunks)]))
            offset += len(chunks)
        return writes


class Indexer:
    """Turns submitted articles into stored documents, chunks and vectors, in one atomic write per batch."""

    def __init__(self, store: Archive, embedder: Embedder, nlp: Language, rules: DebrisRules,
                 chunk_max_chars: int = 800, chunk_overlap_sentences: int = 1) -> None:
        self.store = store
        self.embedder = embedder
        self.pipeline = DocumentPipeline(embedder, nlp, rules, chunk_max_chars, chunk_overlap_sentences)
        self.analyse = self.pipeline.analyse
        self.prepare = self.pipeline.prepare
        self.embed_analysed = self.pipeline.embed_analysed

    def add(self, docs: list[DocumentIn], show_progress: bool = False) -> list[AddedDocument]:
        """Index ``docs`` and store them together; an id already stored is replaced.

        :raises InvalidInput: if any article is unusable; then nothing is stored.
        """
        _refuse_repeated_ids(docs)
        analysed = self.pipeline.analyse_many(docs, show_progress)
        writes = self.embed_analysed(_last_of_each_id(analysed), show_progress)
        snapshot = self.store.snapshot()
        existing = {w.document.id for w in writes if snapshot.has_document(w.document.id)}
        self.store.write(upserts=writes)
        return [AddedDocument(id=doc.id, title=doc.title, chunks=len(chunks), replaced=doc.id in existing)
                for doc, _, chunks in analysed]

    def add_in_batches(self, docs: list[DocumentIn], batch_size: int = 256,
                       show_progress: bool = False) -> list[AddedDocument]:
        """Bulk ingestion that can be resumed: each batch is one atomic write, and an article already stored
        exactly as given is skipped without embedding it again. Killed half-way, the run is repeated and only
        redoes the batch it was in."""
        from tqdm import tqdm

        _refuse_repeated_ids(docs)
        results: list[AddedDocument] = []
        with tqdm(total=len(docs), desc="indexing", unit="doc", disable=not show_progress) as bar:
            for first in range(0, len(docs), batch_size):
                batch = [self.analyse(d) for d in docs[first:first + batch_size]]
                snapshot = self.store.snapshot()
                stored = {doc.id: snapshot.document(doc.id) for doc, _, _ in batch if snapshot.has_document(doc.id)}
                todo = [item for item in _last_of_each_id(batch) if not _same(stored.get(item[0].id), item[0])]
                writes = self.embed_analysed(todo)
                if writes:
                    self.store.write(upserts=writes)
                changed = {w.document.id for w in writes}
                results += [AddedDocument(id=doc.id, title=doc.title, chunks=len(chunks), replaced=doc.id in stored,
                                          unchanged=doc.id not in changed) for doc, _, chunks in batch]
                bar.update(len(batch))
        return results

    def remove(self, doc_ids: list[str]) -> None:
        """Delete documents by id, all or none.

        :raises DocumentNotFound: if one of them is not stored.
        """
        self.store.write(deletes=doc_ids)
