"""Typed records that cross module boundaries: documents in and out, chunks, passages and the manifest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AddedDocument", "Chunk", "Document", "DocumentIn", "DocumentWrite", "Filters", "Manifest", "Passage",
           "SegmentRef", "Sentence", "SignalScores", "SourceRef"]

# Ids end up in URLs, file names and log lines, so they are kept to a safe, readable alphabet.
DOC_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_DOCUMENT_CHARS = 2_000_000  # about 300k words: far beyond any article, small enough to refuse junk.


def check_doc_id(value: str) -> str:
    """Return ``value`` if it is a valid document id, else raise ``ValueError`` saying what is allowed."""
    if not DOC_ID_PATTERN.match(value):
        raise ValueError(
            f"document id {value[:80]!r} is not allowed: use 1-128 letters, digits, '.', '_', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


class DocumentIn(BaseModel):
    """An article as submitted for indexing, before cleaning."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    id: str | None = Field(default=None, description="Stable id; derived from the content when omitted.")
    title: str = Field(min_length=1, max_length=1000)
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    source: str | None = Field(default=None, max_length=200, description="Outlet, e.g. 'BBC News'.")
    published: date | None = None
    url: str | None = Field(default=None, max_length=2000)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        return None if value is None else check_doc_id(value)

    @field_validator("title", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain some non-whitespace text")
        return value


class Document(BaseModel):
    """A stored article: ``text`` is the cleaned text that every offset and citation refers to."""

    id: str
    title: str
    text: str
    source: str | None = None
    published: date | None = None
    url: str | None = None
    n_chunks: int = 0


class Sentence(BaseModel):
    """A sentence of a stored document, as character offsets into its text."""

    start: int
    end: int


class Chunk(BaseModel):
    """A retrieval unit: a window of whole sentences, with offsets into the stored document text."""

    chunk_id: str
    doc_id: str
    seq: int
    start: int
    end: int
    text: str


class SourceRef(BaseModel):
    """Which article a passage or quote comes from, with the metadata a reader needs to cite it."""

    doc_id: str
    title: str
    source: str | None = None
    published: date | None = None
    url: str | None = None


class SignalScores(BaseModel):
    """Why a passage ranked where it did: each retrieval signal's score (shown with ``"explain": true``)."""

    dense: float = Field(description="Cosine similarity of query and passage (mixed with its article's centroid).")
    lexical: float = Field(description="BM25 score (with spelling variants; mixed with the whole article's).")
    fused: float = Field(description="The combined score the ranking uses.")
    recency: float | None = Field(default=None, description="Recency factor applied, when asked for.")


class Passage(SourceRef):
    """A retrieved chunk with its document's metadata and its relevance score."""

    chunk_id: str
    text: str
    start: int
    end: int
    score: float
    also_in: list[SourceRef] = Field(default_factory=list,
                                     description="Other articles carrying the same passage (near-duplicates).")
    scores: SignalScores | None = None


class Filters(BaseModel):
    """Metadata restrictions applied before ranking."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] | None = Field(default=None, description="Keep only these outlets (exact match).")
    doc_ids: list[str] | None = Field(default=None, description="Keep only these document ids.")
    published_from: date | None = Field(default=None, description="Earliest publication date, inclusive.")
    published_to: date | None = Field(default=None, description="Latest publication date, inclusive.")

    def is_empty(self) -> bool:
        """True when no restriction is set."""
        return not (self.sources or self.doc_ids or self.published_from or self.published_to)


class SegmentRef(BaseModel):
    """A segment a generation uses, and which of its articles that generation has deleted (tombstones)."""

    name: str
    deleted: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    """What a data directory holds and how it was built; checked before anything is loaded."""

    format_version: int
    model_id: str
    dimension: int
    n_documents: int
    n_chunks: int
    generation: int
    updated_at: str
    # sha256 of every file of the generation but the manifest, by relative path (written from format 1.1 on;
    # `newsroom-qa index verify` checks them). From format 2: each segment's segment.json, which vouches for the rest.
    checksums: dict[str, str] = Field(default_factory=dict)
    segments: list[SegmentRef] = Field(default_factory=list)  # format 2: the live segments, oldest first
    next_rowid: int = 1  # format 2: the first chunk row id the next segment may use


class AddedDocument(BaseModel):
    """What indexing did with one article."""

    id: str
    title: str
    chunks: int
    replaced: bool
    unchanged: bool = False  # already stored exactly so: not embedded or written again


@dataclass
class DocumentWrite:
    """One document to store, with everything derived from it at index time."""

    document: Document
    sentences: list[Sentence]
    chunks: list[Chunk]
    vectors: np.ndarray  # shape: (len(chunks), dimension), unit length
