"""The newsroom Slack bot: a slack_bolt ``App`` answering from the same ``Newsroom`` as the HTTP API.

- an @mention or a direct message gets a threaded reply; the thread is the conversation, so follow-ups in it work
  (with or without mentioning the bot again);
- ``/ask`` answers only to the asker, with a "Share in channel" button;
- Right / Wrong buttons store feedback in the same store as the web page.

Bolt verifies request signatures and acknowledges events before the listener runs (listeners run in its thread
pool), so a slow answer never misses Slack's 3-second deadline. Slack retries an event it thinks was lost; the
event id is remembered, so a retry is acknowledged and not answered twice.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from index.errors import InvalidInput, QAError
from service.newsroom import Newsroom
from service.schemas import ChatTurn, FeedbackRequest
from service.settings import Settings
from service.slack.blocks import ACTION_DOWN, ACTION_SHARE, ACTION_UP, answer_message, escape

__all__ = ["SeenEvents", "SlackNotConfigured", "build_slack_app", "require_slack_settings"]

logger = logging.getLogger(__name__)
GONE = "that answer is no longer stored"
MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


class SlackNotConfigured(QAError):
    """A Slack setting the bot needs is missing."""


class SeenEvents:
    """The last ``size`` event ids, so that Slack's retries of an event already being answered are dropped."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            if len(self._ids) > self.size:
                self._ids.popitem(last=False)
            return True


def require_slack_settings(settings: Settings, socket_mode: bool = False) -> None:
    """Name each missing setting, with where to find its value."""
    missing = []
    if settings.slack_bot_token is None:
        missing.append("SLACK_BOT_TOKEN (the app's Bot User OAuth Token, xoxb-..., under OAuth & Permissions)")
    if socket_mode and settings.slack_app_token is None:
        missing.append("SLACK_APP_TOKEN (an app-level token with connections:write, xapp-..., under Basic Information)")
    if not socket_mode and settings.slack_signing_secret is None:
        missing.append("SLACK_SIGNING_SECRET (the app's Signing Secret, under Basic Information)")
    if missing:
        raise SlackNotConfigured("the Slack bot cannot start: set " + " and ".join(missing) +
                                 "; see docs/chat-and-slack.md")


def _question(text: str) -> str:
    return " ".join(MENTION.sub(" ", text).split())


def build_slack_app(newsroom: Newsroom, socket_mode: bool = False) -> App:
    """The bolt app with every listener registered. :raises SlackNotConfigured: naming a missing setting."""
    settings = newsroom.qa.settings
    require_slack_settings(settings, socket_mode)
    assert settings.slack_bot_token is not None
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    try:
        app = App(client=client, signing_secret=secret, request_verification_enabled=not socket_mode)
    except (SlackApiError, OSError) as exc:
        raise SlackNotConfigured(f"Slack did not accept SLACK_BOT_TOKEN ({exc}); check the token and that "
                                 f"{settings.slack_api_url} is reachable") from exc
    _Listeners(newsroom, SeenEvents()).register(app)
    return app


class _Listeners:
    def __init__(self, newsroom: Newsroom, seen: SeenEvents) -> None:
        self.newsroom = newsroom
        self.seen = seen
        self.t = newsroom.qa.prompts.templates.slack

    def register(self, app: App) -> None:
        app.middleware(self.drop_retries)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.command("/ask")(self.on_ask)
        app.action(ACTION_SHARE)(self.on_share)
        app.action(re.compile(f"^(?:{ACTION_UP}|{ACTION_DOWN})$"))(self.on_feedback)

    # --- middleware ----------------------------------------------------------------------------------
    def drop_retries(self, body: dict[str, Any], next: Any, logger: logging.Logger) -> BoltResponse | None:
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not self.seen.first_time(event_id):
            logger.info("event %s was already received; not answering the retry", event_id)
            return BoltResponse(status=200, body="")
        next()
        return None

    # --- events --------------------------------------------------------------------------------------
    def on_mention(self, event: dict[str, Any], client: WebClient) -> None:
        self.reply_in_thread(event, client)

    def on_message(self, event: dict[str, Any], client: WebClient, context: dict[str, Any]) -> None:
        if event.get("subtype") or event.get("bot_id"):
            return  # edits, joins, and bots (ourselves included) are not questions
        if f"<@{context.get('bot_user_id')}>" in event.get("text", ""):
            return  # the app_mention event answers it
        if event.get("channel_type") == "im":
            self.reply_in_thread(event, client)
        elif event.get("thread_ts") and self.newsroom.chat_service.conversations.history(self._thread_id(event), 1):
            self.reply_in_thread(event, client)  # a follow-up in a thread the bot is answering in

    @staticmethod
    def _thread_id(event: dict[str, Any]) -> str:
        return f"slack:{event['channel']}:{event.get('thread_ts') or event['ts']}"

    def reply_in_thread(self, event: dict[str, Any], client: WebClient) -> None:
        thread_ts = event.get("thread_ts") or event["ts"]
        question = _question(event.get("text", ""))
        conversation_id = self._thread_id(event)
        blocks, text = self.answer(conversation_id, question)
        client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, blocks=blocks, text=text,
                                unfurl_links=False, unfurl_media=False)

    def answer(self, conversation_id: str, question: str, share: bool = False) -> tuple[list[dict[str, Any]], str]:
        if not question:
            return [], self.t["usage"]
        try:
            turn = self.newsroom.chat_service.turn(conversation_id, question)
        except QAError as exc:  # a bad question, or a model/data problem: the user sees why, in the thread
            if not isinstance(exc, InvalidInput):
                logger.warning("could not answer %r: %s", question, exc)
            return [], self.t["error"].format(message=str(exc))
        empty = self.newsroom.qa.store.snapshot().manifest.n_documents == 0
        return answer_message(turn, self.t, resolved_question=turn.resolved_question, question=question,
                              conversation_id=turn.conversation_id, turn=turn.turn, share=share,
                              archive_empty=empty)

    # --- slash command and buttons -------------------------------------------------------------------
    def on_ask(self, ack: Any, command: dict[str, Any], client: WebClient) -> None:
        ack()  # within Slack's 3 seconds; the answer follows as an ephemeral message
        conversation_id = f"slack:{command['channel_id']}:ask:{uuid.uuid4().hex[:12]}"
        blocks, text = self.answer(conversation_id, command.get("text", "").strip(), share=True)
        client.chat_postEphemeral(channel=command["channel_id"], user=command["user_id"], blocks=blocks, text=text)

    def _stored_turn(self, value: str) -> tuple[str, ChatTurn]:
        """The conversation id and stored turn a button's value names. :raises LookupError: if it is gone."""
        try:
            ref = json.loads(value)
            conversation_id, n = str(ref["c"]), int(ref["t"])
            history = self.newsroom.chat_service.get(conversation_id).history
        except (QAError, ValueError, KeyError, TypeError) as exc:
            raise LookupError(value) from exc
        turn = next((t for t in history if t.n == n), None)
        if turn is None:
            raise LookupError(value)
        return conversation_id, turn

    def on_share(self, ack: Any, body: dict[str, Any], client: WebClient, respond: Any) -> None:
        ack()
        action, user, channel = body["actions"][0], body["user"]["id"], body["channel"]["id"]
        try:
            conversation_id, turn = self._stored_turn(action["value"])
        except LookupError:
            client.chat_postEphemeral(channel=channel, user=user, text=self.t["error"].format(message=GONE))
            return
        blocks, text = answer_message(turn.response, self.t, resolved_question=turn.resolved_question,
                                      question=turn.message, conversation_id=conversation_id, turn=turn.n)
        header = {"type": "context", "elements": [{"type": "mrkdwn", "text": self.t["shared_by"].format(
            user=user, question=escape(turn.message))}]}
        client.chat_postMessage(channel=channel, blocks=[header, *blocks], text=text, unfurl_links=False)
        if body.get("response_url"):
            respond(delete_original=True)

    def on_feedback(self, ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        action, user, channel = body["actions"][0], body["user"]["id"], body["channel"]["id"]
        try:
            conversation_id, turn = self._stored_turn(action["value"])
        except LookupError:
            text = self.t["error"].format(message=GONE)
        else:
            self.newsroom.feedback.add(FeedbackRequest(
                rating="up" if action["action_id"] == ACTION_UP else "down", question=turn.resolved_question,
                answer=turn.response.answer, citations=turn.response.citations, conversation_id=conversation_id,
                turn=turn.n, comment=f"slack user {user}"))
            text = self.t["thanks"]
        thread_ts = (body.get("message") or {}).get("thread_ts")
        client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
