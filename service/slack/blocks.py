"""Block Kit rendering of an answer for Slack, with a plain-text fallback (notifications, screen readers).

Plain functions from the response model and the ``[slack]`` templates to the JSON Slack takes; the bot in
``slack_app.py`` only decides where to post it.
"""

from __future__ import annotations

import json
from typing import Any

from index.models import SourceRef
from service.render import flatten, when
from service.schemas import AnswerResponse

__all__ = ["ACTION_DOWN", "ACTION_SHARE", "ACTION_UP", "answer_message", "escape", "feedback_ref"]

ACTION_UP = "feedback_up"
ACTION_DOWN = "feedback_down"
ACTION_SHARE = "share_answer"
SECTION_LIMIT = 3000  # characters in one section's text (Slack's limit)
QUOTE_CHARS = 400
SNIPPET_CHARS = 200

Block = dict[str, Any]


def escape(text: str) -> str:
    """Slack mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(ref: SourceRef) -> str:
    title = escape(flatten(ref.title, 150)).replace("|", "¦")
    return f"<{ref.url}|{title}>" if ref.url else f"_{title}_"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, SECTION_LIMIT)}}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def feedback_ref(conversation_id: str, turn: int) -> str:
    """The button value that names the answer being rated: the stored conversation turn."""
    return json.dumps({"c": conversation_id, "t": turn}, separators=(",", ":"))


def answer_message(response: AnswerResponse, t: dict[str, str], *, resolved_question: str | None = None,
                   question: str | None = None, conversation_id: str | None = None, turn: int | None = None,
                   share: bool = False, archive_empty: bool = False) -> tuple[list[Block], str]:
    """``(blocks, fallback_text)`` for one answer or abstention.

    :param resolved_question: shown in small print when it differs from ``question`` (a rewritten follow-up).
    :param conversation_id, turn: the stored turn the feedback buttons refer to; without them there are none.
    :param share: add a "Share in channel" button (ephemeral replies to /ask) naming the stored turn.
    """
    blocks: list[Block] = []
    if resolved_question and question and resolved_question != question:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": t["resolved"].format(question=escape(resolved_question))}]})
    if response.abstained:
        fallback = t["empty_archive"] if archive_empty else t["fallback_abstain"]
        blocks.append(_section(t["empty_archive"] if archive_empty else t["abstain"]))
        if response.passages:
            lines = [t["nearest_heading"]]
            for n, p in enumerate(response.passages, start=1):
                lines.append(t["nearest"].format(n=n, link=_link(p), source=escape(p.source or t["unknown_source"]),
                                                 published=when(p.published, t),
                                                 snippet=escape(flatten(p.text, SNIPPET_CHARS))))
            blocks.append(_section("\n".join(lines)))
    else:
        answer = escape(response.answer or "")
        blocks.append(_section(t["answer"].format(answer=answer)))
        if response.supporting_sentence:
            blocks.append(_section(t["supporting"].format(
                sentence=escape(flatten(response.supporting_sentence, QUOTE_CHARS)))))
        lines = [t["sources_heading"]]
        for n, c in enumerate(response.citations, start=1):
            lines.append(t["source"].format(
                n=n, link=_link(c), source=escape(c.source or t["unknown_source"]), published=when(c.published, t),
                quote=escape(flatten(c.quote, QUOTE_CHARS))))
        blocks.append(_section("\n".join(lines)))
        if response.sources_differ:
            lines = [t["differ_heading"]]
            for n, alt in enumerate(response.alternatives, start=len(response.citations) + 1):
                c = alt.citation
                lines.append(t["differ"].format(
                    n=n, answer=escape(alt.answer), link=_link(c), source=escape(c.source or t["unknown_source"]),
                    published=when(c.published, t), quote=escape(flatten(c.quote, QUOTE_CHARS))))
            blocks.append(_section("\n".join(lines)))
        first = response.citations[0]
        fallback = t["fallback_answer"].format(answer=response.answer, sentence=flatten(first.quote, QUOTE_CHARS),
                                               source=first.source or t["unknown_source"],
                                               published=when(first.published, t))
    buttons: list[Block] = []
    if conversation_id is not None and turn is not None:
        value = feedback_ref(conversation_id, turn)
        buttons += [{"type": "button", "action_id": ACTION_UP, "value": value,
                     "text": {"type": "plain_text", "text": t["feedback_up"]}},
                    {"type": "button", "action_id": ACTION_DOWN, "value": value,
                     "text": {"type": "plain_text", "text": t["feedback_down"]}}]
    if share and conversation_id is not None and turn is not None:
        buttons.append({"type": "button", "action_id": ACTION_SHARE, "style": "primary",
                        "value": feedback_ref(conversation_id, turn), "text": {"type": "plain_text",
                                                                                "text": t["share"]}})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks, fallback
