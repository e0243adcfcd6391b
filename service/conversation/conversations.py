"""Stored conversations: each turn keeps the message, the question it was resolved to and the answer shown."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from index.errors import InvalidInput, QAError
from service.conversation.database import conversations, turns
from service.schemas import AnswerResponse, ChatTurn, ConversationDetail, ConversationList, ConversationSummary

__all__ = ["ConversationNotFound", "ConversationStore"]

TITLE_CHARS = 120


class ConversationNotFound(QAError):
    """No conversation with that id is stored."""


class ConversationStore:
    """Conversations in the chat database; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def history(self, conversation_id: str, last: int) -> list[ChatTurn]:
        """The ``last`` turns, oldest first (empty for an unknown id: a client may start a conversation by id)."""
        query = (select(turns).where(turns.c.conversation_id == conversation_id)
                 .order_by(turns.c.n.desc()).limit(last))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_turn(row) for row in reversed(rows)]

    def append(self, conversation_id: str, message: str, resolved_question: str, response: AnswerResponse) -> int:
        """Store a turn, creating the conversation on its first; returns the turn's number (1-based)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            exists = conn.execute(select(conversations.c.id).where(conversations.c.id == conversation_id)).first()
            if exists is None:
                conn.execute(insert(conversations).values(id=conversation_id, title=_title(message), created=now,
                                                          updated=now))
            else:
                conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(updated=now))
            last = conn.execute(select(func.max(turns.c.n)).where(turns.c.conversation_id == conversation_id))
            n = (last.scalar() or 0) + 1
            conn.execute(insert(turns).values(conversation_id=conversation_id, n=n, message=message,
                                              resolved_question=resolved_question,
                                              response=response.model_dump_json(), created=now))
        return n

    def list(self, limit: int = 50, offset: int = 0) -> ConversationList:
        if not (1 <= limit <= 1000 and 0 <= offset <= 2**31):
            raise InvalidInput(f"limit must be 1-1000 and offset 0-2^31; got limit={limit}, offset={offset}")
        counts = (select(turns.c.conversation_id, func.count().label("turns"))
                  .group_by(turns.c.conversation_id).subquery())
        query = (select(conversations, func.coalesce(counts.c.turns, 0).label("turns"))
                 .outerjoin(counts, counts.c.conversation_id == conversations.c.id)
                 .order_by(conversations.c.updated.desc(), conversations.c.id).limit(limit).offset(offset))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            total = conn.execute(select(func.count()).select_from(conversations)).scalar() or 0
        return ConversationList(conversations=[_summary(row, row["turns"]) for row in rows], total=total)

    def get(self, conversation_id: str) -> ConversationDetail:
        with self.engine.connect() as conn:
            row = conn.execute(select(conversations).where(conversations.c.id == conversation_id)).mappings().first()
            if row is None:
                raise ConversationNotFound(f"no conversation with id {conversation_id!r}")
            rows = conn.execute(select(turns).where(turns.c.conversation_id == conversation_id)
                                .order_by(turns.c.n)).mappings().all()
        history = [_turn(r) for r in rows]
        return ConversationDetail(**_summary(row, len(history)).model_dump(), history=history)

    def delete(self, conversation_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(turns).where(turns.c.conversation_id == conversation_id))
            gone = conn.execute(delete(conversations).where(conversations.c.id == conversation_id))
            if gone.rowcount == 0:
                raise ConversationNotFound(f"no conversation with id {conversation_id!r}")


def _title(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1] + "…"


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _summary(row, n_turns: int) -> ConversationSummary:  # type: ignore[no-untyped-def]
    return ConversationSummary(id=row["id"], title=row["title"], created=_aware(row["created"]),
                               updated=_aware(row["updated"]), turns=n_turns)


def _turn(row) -> ChatTurn:  # type: ignore[no-untyped-def]
    return ChatTurn(n=row["n"], message=row["message"], resolved_question=row["resolved_question"],
                    response=AnswerResponse.model_validate_json(row["response"]), created=_aware(row["created"]))
