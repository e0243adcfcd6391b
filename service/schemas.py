"""Request and response models of the HTTP API; the CLI and other front ends use the same ones."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from index.models import AddedDocument, DocumentIn, Filters, Passage, SourceRef

__all__ = [
    "AddDocumentsRequest",
    "AddDocumentsResponse",
    "AnswerResponse",
    "AskRequest",
    "ChatRequest",
    "ChatResponse",
    "ChatTurn",
    "Citation",
    "ConversationDetail",
    "ConversationList",
    "ConversationSummary",
    "DocumentDetail",
    "DocumentList",
    "DocumentSummary",
    "FeedbackRequest",
    "FeedbackResponse",
    "Recency",
    "SearchRequest",
    "SearchResponse",
]


class Recency(BaseModel):
    """Favour newer articles: a passage's score is scaled by ``(1 - weight) + weight * 0.5 ** (age / half_life)``."""

    model_config = ConfigDict(extra="forbid")

    half_life_days: float = Field(gt=0, description="Age at which an article counts half as recent.")
    weight: float = Field(default=0.3, ge=0.0, le=1.0, description="How much recency matters (0 = not at all).")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="What to look for, in plain words.")
    top_k: int | None = Field(default=None,
                              description="How many passages to return (default: the service's top_k, 5).")
    filters: Filters | None = None
    recency: Recency | None = None
    explain: bool = Field(default=False, description="Include each passage's dense, lexical and fused scores.")


class SearchResponse(BaseModel):
    results: list[Passage]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="A question about the archive, e.g. 'Who doubted the crematorium claim?'")
    top_k: int | None = Field(default=None, description="Passages to read (default: the service's top_k).")
    filters: Filters | None = None
    recency: Recency | None = None


class Citation(SourceRef):
    """A verbatim quote of a stored article: ``document.text[start:end] == quote``."""

    start: int
    end: int
    quote: str


class AlternativeAnswer(BaseModel):
    """Another article's answer that differs from the main one, with its own quote."""

    answer: str
    confidence: float = Field(ge=0.0, le=1.0)
    citation: Citation


class AnswerResponse(BaseModel):
    answer: str | None = Field(description="A short span quoted from the supporting sentence; null on abstention.")
    answer_start: int | None = Field(default=None, description="Offset of the answer in the first citation's article.")
    answer_end: int | None = Field(default=None, description="End offset: article.text[answer_start:answer_end] == "
                                   "answer.")
    abstained: bool
    confidence: float = Field(ge=0.0, le=1.0)
    supporting_sentence: str | None
    citations: list[Citation] = Field(description="The first one quotes the supporting sentence.")
    passages: list[Passage] = Field(description="Retrieved passages, also on abstention.")
    message: str = Field(description="One-line rendering for simple clients.")
    sources_differ: bool = Field(default=False, description="True when other articles give a different number, "
                                 "name or date; each is listed in `alternatives` with its citation.")
    alternatives: list[AlternativeAnswer] = Field(default_factory=list)


CONVERSATION_ID = r"^[A-Za-z0-9._:-]{1,128}$"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = Field(
        default=None, pattern=CONVERSATION_ID,
        description="Continue this conversation; a new id starts one under that id; omitted: a new random id.")
    message: str = Field(description="A question or a follow-up such as 'What did he say?' or 'And in 2013?'.")


class ChatResponse(AnswerResponse):
    conversation_id: str
    turn: int = Field(description="1 for the first message of the conversation.")
    resolved_question: str = Field(description="The question actually answered: the message with pronouns and "
                                   "ellipses filled in from earlier turns.")


class ChatTurn(BaseModel):
    n: int
    message: str
    resolved_question: str
    response: AnswerResponse
    created: datetime


class ConversationSummary(BaseModel):
    id: str
    title: str = Field(description="The first message.")
    created: datetime
    updated: datetime
    turns: int


class ConversationDetail(ConversationSummary):
    history: list[ChatTurn]


class ConversationList(BaseModel):
    conversations: list[ConversationSummary] = Field(description="Most recently updated first.")
    total: int


class FeedbackRequest(BaseModel):
    """A thumbs up or down on one answer, kept with what was asked and shown so it can become an evaluation item."""

    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"]
    question: str = Field(min_length=1, max_length=5000)
    answer: str | None = Field(default=None, max_length=5000, description="Null when the service abstained.")
    citations: list[Citation] = Field(default_factory=list, max_length=20)
    conversation_id: str | None = Field(default=None, pattern=CONVERSATION_ID)
    turn: int | None = Field(default=None, ge=1)
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackResponse(BaseModel):
    id: int
    created: datetime


class AddDocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class AddDocumentsResponse(BaseModel):
    documents: list[AddedDocument]


class DocumentSummary(BaseModel):
    id: str
    title: str
    source: str | None = None
    published: date | None = None
    url: str | None = None
    chunks: int


class DocumentDetail(DocumentSummary):
    text: str


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    total: int
