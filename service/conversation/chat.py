"""Chat: a question answered within a conversation, its follow-ups resolved against the earlier turns.

One turn is a sequence of events (the resolved question, the retrieved passages, the answer, done); the HTTP API
streams them as server-sent events or returns the final answer, the web page and Slack show them as they come.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel

from index.models import Passage
from service.answering.qa import QAService
from service.conversation.conversations import ConversationStore
from service.conversation.followup import FollowupResolver, PriorTurn
from service.schemas import ChatResponse, ConversationDetail, ConversationList

__all__ = ["ChatEvent", "ChatService", "DoneEvent", "PassagesEvent", "ResolvedEvent"]


class ResolvedEvent(BaseModel):
    conversation_id: str
    message: str
    resolved_question: str


class PassagesEvent(BaseModel):
    passages: list[Passage]


class DoneEvent(BaseModel):
    conversation_id: str
    turn: int


class ChatEvent(BaseModel):
    """One step of a chat turn; ``event`` names the SSE event type."""

    event: Literal["resolved", "passages", "answer", "done"]
    data: ResolvedEvent | PassagesEvent | ChatResponse | DoneEvent


class ChatService:
    """Conversations on top of a ``QAService``: resolve, retrieve, answer, remember."""

    def __init__(self, qa: QAService, conversations: ConversationStore, resolver: FollowupResolver) -> None:
        self.qa = qa
        self.conversations = conversations
        self.resolver = resolver

    def turn(self, conversation_id: str | None, message: str) -> ChatResponse:
        """Answer one message; the conversation is created on its first turn."""
        answer = None
        for step in self.events(conversation_id, message):
            if isinstance(step.data, ChatResponse):
                answer = step.data
        assert answer is not None
        return answer

    def events(self, conversation_id: str | None, message: str) -> Iterator[ChatEvent]:
        """The turn's steps as they happen. The message is checked before the first event, so a bad one raises
        ``InvalidInput`` rather than starting a stream."""
        question = self.qa.check_question(message, what="message")
        conv_id = conversation_id or uuid.uuid4().hex
        return self._steps(conv_id, question)

    def _steps(self, conv_id: str, question: str) -> Iterator[ChatEvent]:
        history = [PriorTurn(t.resolved_question, t.response.answer, t.response.supporting_sentence)
                   for t in self.conversations.history(conv_id, self.resolver.rules.lookback_turns)]
        resolved = self.resolver.resolve(question, history)
        yield ChatEvent(event="resolved", data=ResolvedEvent(conversation_id=conv_id, message=question,
                                                             resolved_question=resolved))
        retrieved = self.qa.retrieve(resolved)
        yield ChatEvent(event="passages", data=PassagesEvent(passages=retrieved.passages))
        answer = self.qa.answer(resolved, retrieved)
        n = self.conversations.append(conv_id, question, resolved, answer)
        yield ChatEvent(event="answer", data=ChatResponse(**answer.model_dump(), conversation_id=conv_id, turn=n,
                                                          resolved_question=resolved))
        yield ChatEvent(event="done", data=DoneEvent(conversation_id=conv_id, turn=n))

    def list(self, limit: int = 50, offset: int = 0) -> ConversationList:
        return self.conversations.list(limit, offset)

    def get(self, conversation_id: str) -> ConversationDetail:
        return self.conversations.get(conversation_id)

    def delete(self, conversation_id: str) -> None:
        self.conversations.delete(conversation_id)
