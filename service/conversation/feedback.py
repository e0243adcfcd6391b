"""Thumbs up/down on answers, and their export as a JSON Lines evaluation set.

An exported line has the shape of the project's evaluation files (``id``, ``q``, ``any``, ``doc``): a thumbs-up
answer becomes a gold answer; a thumbs-down keeps the rejected answer in ``wrong`` so a reader change can be checked
against both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, insert, select

from service.conversation.database import feedback
from service.schemas import Citation, FeedbackRequest, FeedbackResponse

__all__ = ["FeedbackStore"]


class FeedbackStore:
    """Feedback rows in the chat database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, item: FeedbackRequest) -> FeedbackResponse:
        now = datetime.now(UTC)
        citations = json.dumps([c.model_dump(mode="json") for c in item.citations])
        with self.engine.begin() as conn:
            result = conn.execute(insert(feedback).values(
                rating=item.rating, question=item.question.strip(), answer=item.answer, citations=citations,
                conversation_id=item.conversation_id, turn=item.turn, comment=item.comment, created=now))
            key = result.inserted_primary_key
        assert key is not None
        return FeedbackResponse(id=int(key[0]), created=now)

    def export(self, rating: Literal["up", "down"] | None = None) -> Iterator[dict[str, object]]:
        """Evaluation items, oldest first: ``{"id", "q", "any", "doc", "rating", ...}``."""
        query = select(feedback).order_by(feedback.c.id)
        if rating is not None:
            query = query.where(feedback.c.rating == rating)
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                citations = [Citation.model_validate(c) for c in json.loads(row["citations"])]
                good = row["rating"] == "up"
                yield {
                    "id": f"fb{row['id']}",
                    "q": row["question"],
                    "any": [row["answer"]] if good and row["answer"] else [],
                    "wrong": [row["answer"]] if not good and row["answer"] else [],
                    "doc": citations[0].doc_id if good and citations else None,
                    "rating": row["rating"],
                    "answer": row["answer"],
                    "citations": [c.model_dump(mode="json") for c in citations],
                    "conversation_id": row["conversation_id"],
                    "turn": row["turn"],
                    "comment": row["comment"],
                    "created": row["created"].isoformat(),
                }
