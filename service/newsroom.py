"""``Newsroom``: every service of one archive, built once and handed to the HTTP API, the CLI and Slack.

It is also the API a Python program embeds without HTTP: the same operations and the same pydantic models as the
HTTP API (``AnswerResponse``, ``ChatResponse``, ``SearchResponse``, ...), and the same errors (``InvalidInput``,
``DocumentNotFound``, ... from ``index.errors``)::

    from index.models import DocumentIn
    from service.newsroom import Newsroom

    newsroom = Newsroom.open(data_dir="/srv/archive")      # loads the models once
    newsroom.add_documents([DocumentIn(id="dam-2024", title="Dam opens", text="The dam opened on Friday.")])
    answer = newsroom.ask("When did the dam open?")         # answer.answer, answer.citations[0].quote, ...
    turn = newsroom.chat(None, "Who opened it?")            # turn.conversation_id, turn.resolved_question
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.models import DocumentIn, Filters
from service.answering.qa import QAService
from service.conversation.chat import ChatService
from service.conversation.conversations import ConversationStore
from service.conversation.database import open_database
from service.conversation.feedback import FeedbackStore
from service.conversation.followup import FollowupResolver, load_followup_rules
from service.schemas import (
    AddDocumentsResponse,
    AnswerResponse,
    ChatResponse,
    DocumentDetail,
    DocumentList,
    FeedbackRequest,
    FeedbackResponse,
    Recency,
    SearchResponse,
)
from service.settings import Settings

__all__ = ["Newsroom"]


@dataclass
class Newsroom:
    qa: QAService
    chat_service: ChatService
    feedback: FeedbackStore

    @classmethod
    def open(cls, data_dir: str | Path | None = None, **settings: Any) -> Newsroom:
        """Build from keyword settings (any ``Settings`` field: ``embedding_model``, ``reader``, ...) over the
        environment's; ``data_dir`` defaults to ``NEWSROOM_QA_DATA_DIR`` or ``~/.local/share/newsroom-qa``."""
        if data_dir is not None:
            settings["data_dir"] = Path(data_dir)
        return cls.from_settings(Settings(**settings))

    @classmethod
    def from_settings(cls, settings: Settings, seed_if_empty: bool = True) -> Newsroom:
        """Load the models, open the data directory (seeding an empty one) and the conversation database."""
        return cls.around(QAService.from_settings(settings, seed_if_empty=seed_if_empty))

    @classmethod
    def around(cls, qa: QAService) -> Newsroom:
        """Chat and feedback for an already built ``QAService``, in its data directory (or ``database_url``)."""
        settings = qa.settings
        engine = open_database(settings.database_url, settings.data_dir)
        resolver = FollowupResolver(qa.indexer.pipeline.nlp,
                                    load_followup_rules(settings.prompts_dir / "followups.toml"))
        return cls(qa=qa, chat_service=ChatService(qa, ConversationStore(engine), resolver),
                   feedback=FeedbackStore(engine))

    def close(self) -> None:
        """Close the archive and the conversation database's connections (a server shutting down, or the end of a
        ``with Newsroom.open(...) as newsroom:`` block); idempotent."""
        self.qa.close()
        self.chat_service.conversations.engine.dispose()

    def __enter__(self) -> Newsroom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the embeddable API: one method per HTTP operation ---------------------------------------------
    def ask(self, question: str, top_k: int | None = None, filters: Filters | None = None,
            recency: Recency | None = None) -> AnswerResponse:
        """``POST /v1/ask``: a short answer quoted from an article with its citations, or an abstention."""
        return self.qa.ask(question, top_k, filters, recency)

    def search(self, query: str, top_k: int | None = None, filters: Filters | None = None,
               recency: Recency | None = None, explain: bool = False) -> SearchResponse:
        """``POST /v1/search``: the most relevant passages."""
        return self.qa.search(query, top_k, filters, recency, explain)

    def chat(self, conversation_id: str | None, message: str) -> ChatResponse:
        """``POST /v1/chat``: one turn; ``None`` starts a new conversation (its id is in the response)."""
        return self.chat_service.turn(conversation_id, message)

    def add_documents(self, documents: list[DocumentIn], show_progress: bool = False) -> AddDocumentsResponse:
        """``POST /v1/documents``: store articles, all or none; an existing id is replaced."""
        return self.qa.add_documents(documents, show_progress=show_progress)

    def add_paths(self, paths: list[Path], show_progress: bool = False) -> AddDocumentsResponse:
        """Store article files and directories (``newsroom-qa index add``)."""
        return self.qa.add_paths(paths, show_progress=show_progress)

    def get_document(self, doc_id: str) -> DocumentDetail:
        return self.qa.get_document(doc_id)

    def list_documents(self, limit: int = 100, offset: int = 0) -> DocumentList:
        return self.qa.list_documents(limit, offset)

    def delete_documents(self, doc_ids: list[str]) -> None:
        self.qa.delete_documents(doc_ids)

    def rate(self, feedback: FeedbackRequest) -> FeedbackResponse:
        """``POST /v1/feedback``."""
        return self.feedback.add(feedback)
