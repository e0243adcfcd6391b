"""``Newsroom``: every service of one archive, built once and handed to the HTTP API, the CLI and Slack.

It is also the API a Python program embeds without HTTP: the same methods and the same pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.chat import ChatService
from service.conversations import ConversationStore
from service.database import open_database
from service.feedback import FeedbackStore
from service.followup import FollowupResolver, load_followup_rules
from service.qa import QAService
from service.settings import Settings

__all__ = ["Newsroom"]


@dataclass
class Newsroom:
    qa: QAService
    chat: ChatService
    feedback: FeedbackStore

    @classmethod
    def from_settings(cls, settings: Settings, seed_if_empty: bool = True) -> Newsroom:
        """Load the models, open the data directory (seeding an empty one) and the conversation database."""
        return cls.around(QAService.from_settings(settings, seed_if_empty=seed_if_empty))

    @classmethod
    def around(cls, qa: QAService) -> Newsroom:
        """Chat and feedback for an already built ``QAService``, in its data directory (or ``database_url``)."""
        settings = qa.settings
        engine = open_database(settings.database_url, settings.data_dir)
        resolver = FollowupResolver(qa.indexer.nlp, load_followup_rules(settings.prompts_dir / "followups.toml"))
        return cls(qa=qa, chat=ChatService(qa, ConversationStore(engine), resolver), feedback=FeedbackStore(engine))
