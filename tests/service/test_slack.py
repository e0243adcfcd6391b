"""The real slack_bolt app, mounted in the real service on loopback: signed Slack requests are posted to it over
HTTP, and its Web API calls go to a local stub of Slack's API (``tests/slack_stub.py``) that records them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from click.testing import CliRunner
from slack_sdk.signature import SignatureVerifier

from service.cli import cli
from service.newsroom import Newsroom
from service.settings import Settings
from service.slack.app import SlackNotConfigured, require_slack_settings
from tests.conftest import LiveServer, build_service, make_settings
from tests.slack_stub import BOT_USER_ID, SlackStub, replies_in

pytestmark = pytest.mark.integration

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
CHANNEL = "C0DESK"
USER = "U0REPORTER"


@pytest.fixture(scope="module")
def stub() -> Iterator[SlackStub]:
    with SlackStub() as s:
        yield s


@pytest.fixture(scope="module")
def bot(tmp_path_factory, embedder, nlp, prompts, stub) -> Iterator[tuple[LiveServer, Newsroom]]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path_factory.mktemp("slack-data"), slack_bot_token="xoxb-test-token",
                             slack_signing_secret=SECRET, slack_api_url=stub.url + "/api/")
    newsroom = Newsroom.around(build_service(settings, embedder, nlp, prompts))
    with LiveServer(newsroom) as server:
        yield server, newsroom


@pytest.fixture()
def slack(bot) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=bot[0].url, timeout=60) as client:
        yield client


def signed(body: str, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {"X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)}


_ids = iter(range(1, 1_000_000))


def post_event(client: httpx.Client, event: dict[str, Any], event_id: str | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    envelope = {"token": "legacy", "team_id": "T0NEWS", "api_app_id": "A0NEWS", "type": "event_callback",
                "event_id": event_id or f"Ev{next(_ids):08d}", "event_time": int(time.time()), "event": event}
    body = json.dumps(envelope)
    return client.post("/slack/events", content=body,
                       headers={"Content-Type": "application/json", **signed(body), **(headers or {})})


def post_form(client: httpx.Client, fields: dict[str, str]) -> httpx.Response:
    body = urlencode(fields)
    return client.post("/slack/events", content=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded", **signed(body)})


def mention(text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": USER, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts, "channel": CHANNEL,
             "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            out.append(element["text"] if isinstance(element["text"], str) else element["text"]["text"])
    return out


def test_a_mention_gets_a_threaded_block_kit_answer_with_sources_and_buttons(slack, stub):
    assert post_event(slack, mention("Who is the mayor of Vellmont?", ts="1700000001.000100")).status_code == 200
    [reply] = replies_in(stub, "1700000001.000100", 1)
    assert reply["channel"] == CHANNEL and reply["_auth"] == "Bearer xoxb-test-token"
    blocks = reply["blocks"]
    assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": "*Peter Amsel*"}}
    assert blocks[1]["text"]["text"] == "> Peter Amsel is the mayor of Vellmont."
    sources = blocks[2]["text"]["text"]
    assert sources.startswith("*Sources*\n1. <https://example.org/marren-daily/harbour-doubts|Environmental groups "
                              "question harbour dumping claim> — Marren Daily (fictional), 2024-03-13")
    actions = blocks[-1]
    assert actions["type"] == "actions"
    assert [e["action_id"] for e in actions["elements"]] == ["feedback_up", "feedback_down"]
    ref = json.loads(actions["elements"][0]["value"])
    assert ref == {"c": f"slack:{CHANNEL}:1700000001.000100", "t": 1}
    assert reply["text"].startswith('Peter Amsel — "Peter Amsel is the mayor of Vellmont." [1] Marren Daily')
    assert reply["unfurl_links"] is False


def test_a_reply_in_the_thread_continues_the_conversation(slack, stub, bot):
    thread = "1700000002.000200"
    post_event(slack, mention("Who is the mayor of Vellmont?", ts=thread))
    replies_in(stub, thread, 1)
    follow_up = {"type": "message", "channel_type": "channel", "user": USER, "channel": CHANNEL,
                 "text": "What did he say the city would pay for?", "ts": "1700000002.000300", "thread_ts": thread}
    assert post_event(slack, follow_up).status_code == 200
    second = replies_in(stub, thread, 2)[1]
    assert second["blocks"][0]["elements"][0]["text"] == \
        "_Answered as: What did Peter Amsel say the city would pay for?_"
    assert "new water samples" in second["blocks"][1]["text"]["text"]
    history = bot[1].chat_service.get(f"slack:{CHANNEL}:{thread}").history
    assert [t.resolved_question for t in history] == ["Who is the mayor of Vellmont?",
                                                     "What did Peter Amsel say the city would pay for?"]


def test_a_direct_message_is_answered_and_other_chatter_is_not(slack, stub):
    dm = {"type": "message", "channel_type": "im", "user": USER, "channel": "D0DM", "text": "What is the capital "
          "of France?", "ts": "1700000003.000100"}
    post_event(slack, dm)
    # Messages the bot must ignore: its own, an edit, and a channel message outside any conversation it is in.
    post_event(slack, {**dm, "ts": "1700000003.000200", "bot_id": "B0NEWS", "text": "Not in the archive"})
    post_event(slack, {**dm, "ts": "1700000003.000300", "subtype": "message_changed"})
    post_event(slack, {"type": "message", "channel_type": "channel", "user": USER, "channel": CHANNEL,
                       "text": "lunch?", "ts": "1700000003.000400", "thread_ts": "1699999999.000001"})
    [reply] = replies_in(stub, "1700000003.000100", 1)
    assert reply["channel"] == "D0DM"
    assert reply["blocks"][0]["text"]["text"].startswith("*Not in the archive:*")
    assert reply["blocks"][1]["text"]["text"].startswith("*Nearest sources*\n1. <https://example.org/")
    sentinel = "1700000003.000500"
    post_event(slack, {**dm, "ts": sentinel, "text": "Who is the mayor of Vellmont?"})
    replies_in(stub, sentinel, 1)
    for ts in ("1700000003.000200", "1700000003.000300", "1699999999.000001"):
        assert replies_in(stub, ts, 0) == []


def test_a_retried_event_is_not_answered_twice(slack, stub):
    thread = "1700000004.000100"
    event = mention("Who doubted the pipeline claim?", ts=thread)
    assert post_event(slack, event, event_id="EvRETRY0001").status_code == 200
    retry = post_event(slack, event, event_id="EvRETRY0001",
                       headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200
    replies_in(stub, thread, 1)
    sentinel = "1700000004.000200"  # answered after the retry was received: by then a second answer would show
    post_event(slack, mention("Who is the mayor of Vellmont?", ts=sentinel))
    replies_in(stub, sentinel, 1)
    assert len([m for m in stub.named("chat.postMessage") if m.get("thread_ts") == thread]) == 1


def test_a_bad_signature_is_refused(slack, stub):
    body = json.dumps({"type": "event_callback", "event_id": "EvFORGED", "team_id": "T0NEWS",
                       "event": mention("Who is the mayor of Vellmont?", ts="1700000005.000100")})
    before = len(stub.named("chat.postMessage"))
    forged = slack.post("/slack/events", content=body,
                        headers={"Content-Type": "application/json", **signed(body, secret="not-the-secret")})
    unsigned = slack.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert forged.status_code == 401 and unsigned.status_code == 401
    assert len(stub.named("chat.postMessage")) == before


def test_the_answer_is_acknowledged_before_it_is_ready(slack, stub, bot, monkeypatch):
    """Slack needs a response within 3 seconds; the bot acknowledges first and answers in the background."""
    chat = bot[1].chat_service
    gate = threading.Event()
    original = chat.turn

    def slow_turn(conversation_id: str | None, message: str):  # type: ignore[no-untyped-def]
        assert gate.wait(60), "the test never opened the gate"
        return original(conversation_id, message)

    monkeypatch.setattr(chat, "turn", slow_turn)
    thread = "1700000006.000100"
    response = post_event(slack, mention("Who is the mayor of Vellmont?", ts=thread))
    assert response.status_code == 200  # returned while the answer is still blocked
    assert replies_in(stub, thread, 0) == []
    gate.set()
    assert replies_in(stub, thread, 1)[0]["blocks"][0]["text"]["text"] == "*Peter Amsel*"


def test_slash_command_answers_ephemerally_then_shares_and_rates(slack, stub, bot):
    before = len(stub.named("chat.postEphemeral"))
    response = post_form(slack, {"command": "/ask", "text": "Who is the mayor of Vellmont?", "user_id": USER,
                                 "channel_id": CHANNEL, "team_id": "T0NEWS", "trigger_id": "1.2.3",
                                 "response_url": stub.url + "/response/cmd1"})
    assert response.status_code == 200 and response.text == ""
    ephemeral = stub.wait_for("chat.postEphemeral", before + 1)[before]
    assert ephemeral["channel"] == CHANNEL and ephemeral["user"] == USER
    assert ephemeral["blocks"][0]["text"]["text"] == "*Peter Amsel*"
    buttons = {e["action_id"]: e for e in ephemeral["blocks"][-1]["elements"]}
    assert set(buttons) == {"feedback_up", "feedback_down", "share_answer"}
    assert buttons["share_answer"]["text"]["text"] == "Share in channel"

    share = {"type": "block_actions", "user": {"id": USER}, "channel": {"id": CHANNEL}, "team": {"id": "T0NEWS"},
             "response_url": stub.url + "/response/share1", "trigger_id": "4.5.6", "container": {},
             "actions": [{"action_id": "share_answer", "value": buttons["share_answer"]["value"],
                          "type": "button", "block_id": "b1", "action_ts": "1700000007.1"}]}
    posted_before = len(stub.named("chat.postMessage"))
    assert post_form(slack, {"payload": json.dumps(share)}).status_code == 200
    shared = stub.wait_for("chat.postMessage", posted_before + 1)[posted_before]
    assert shared["channel"] == CHANNEL and "thread_ts" not in shared
    assert shared["blocks"][0]["elements"][0]["text"] == f"Asked by <@{USER}>: Who is the mayor of Vellmont?"
    assert shared["blocks"][1]["text"]["text"] == "*Peter Amsel*"
    assert stub.wait_for("/response/share1", 1)[0]["delete_original"] is True

    rate = {**share, "response_url": stub.url + "/response/rate1",
            "actions": [{**share["actions"][0], "action_id": "feedback_down",
                         "value": buttons["feedback_down"]["value"]}]}
    assert post_form(slack, {"payload": json.dumps(rate)}).status_code == 200
    thanks = stub.wait_for("chat.postEphemeral", before + 2)[before + 1]
    assert thanks["text"].startswith("Thanks")
    [item] = [i for i in bot[1].feedback.export() if i["comment"] == f"slack user {USER}"]
    assert item["rating"] == "down" and item["wrong"] == ["Peter Amsel"]
    assert item["q"] == "Who is the mayor of Vellmont?"
    assert item["citations"][0]["quote"] == "Peter Amsel is the mayor of Vellmont."


def test_missing_slack_settings_are_named(tmp_path, monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SlackNotConfigured, match="set SLACK_SIGNING_SECRET"):
        require_slack_settings(Settings(data_dir=tmp_path, slack_bot_token="xoxb-1"))
    with pytest.raises(SlackNotConfigured, match="SLACK_APP_TOKEN"):
        require_slack_settings(Settings(data_dir=tmp_path, slack_bot_token="xoxb-1"), socket_mode=True)
    result = CliRunner().invoke(cli, ["slack", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "the Slack bot cannot start: set SLACK_BOT_TOKEN" in result.output
    assert "SLACK_SIGNING_SECRET" in result.output
    assert "Traceback" not in result.output


def test_the_app_manifest_subscribes_to_what_the_bot_handles():
    import yaml

    from service.settings import REPO_ROOT

    manifest = yaml.safe_load((REPO_ROOT / "deploy" / "slack-manifest.yml").read_text())
    settings = manifest["settings"]
    assert {"app_mention", "message.im", "message.channels"} <= set(settings["event_subscriptions"]["bot_events"])
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/ask"]
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            manifest["features"]["slash_commands"][0]["url"]]
    assert all(url.endswith("/slack/events") for url in urls)
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "im:history"} <= scopes
