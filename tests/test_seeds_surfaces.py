"""The example question, "Who doubted the crematorium claim?", on every surface of one service built on the bundled
seed articles (issue 26): the Python API, ``/v1/ask`` and ``/v1/chat`` (JSON and server-sent events) over a real
server on loopback, the ``ask`` command in-process and against the server, and the Slack bot through the local stub
of Slack's API, and the chat page in Debian's Chromium driven by Playwright.

Every surface must give the same thing a journalist can use: an answer naming who doubted the claim (human rights
groups, Amnesty's Geoffrey Mock or the UN's Paulo Pinheiro all did, in the second article), cited to the second
article (``004_*``) with a quote that is exactly ``document.text[start:end]``; surfaces that show sources show the
cited article's title and its date.

One faiss service is built for the module (``tests/test_seeds.py`` checks that both backends give the same answers on
the seeds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from slack_sdk.signature import SignatureVerifier

from service.cli import ask as ask_command
from service.newsroom import Newsroom
from service.render import flatten
from service.schemas import AnswerResponse, ChatResponse
from service.slack.blocks import QUOTE_CHARS, escape
from tests.conftest import SEEDS_DIR, LiveServer, build_service, make_settings
from tests.slack_stub import BOT_USER_ID, SlackStub, replies_in
from tests.streams import sse

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (list(SEEDS_DIR.glob("000_*")) and list(SEEDS_DIR.glob("004_*"))),
                                 reason="the seed articles 000_* and 004_* are not in seeds/")]

QUESTION = "Who doubted the crematorium claim?"
DOUBTERS = ("human rights groups", "Amnesty", "Mock", "Pinheiro")  # all voiced doubt in the second article
SECOND_SEED = "004"
SECOND_TITLE = "Syria Daily: US — Assad Regime Builds Crematorium for Bodies of Detainees"
SECOND_DATE = "2017-05-16"


SECRET = "8f14e45fceea167a5a36dedd4bea2543"  # the Slack app's signing secret
CHANNEL = "C0DESK"


# --- reading the surfaces (as in tests/service/test_chat.py and test_slack.py) ------------------------------------
def post_mention(client: httpx.Client, text: str, ts: str) -> httpx.Response:
    """A signed ``app_mention`` event, as Slack sends it."""
    event = {"type": "app_mention", "user": "U0REPORTER", "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
             "channel": CHANNEL, "event_ts": ts}
    body = json.dumps({"token": "legacy", "team_id": "T0NEWS", "api_app_id": "A0NEWS", "type": "event_callback",
                       "event_id": f"Ev{ts.replace('.', '')}", "event_time": int(time.time()), "event": event})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return client.post("/slack/events", content=body, headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature})


# --- what every surface must give ---------------------------------------------------------------------------------
class Texts:
    """Stored article texts by id, fetched once through the surface under test."""

    def __init__(self, fetch: Any) -> None:
        self.fetch = fetch
        self.cache: dict[str, str] = {}

    def __call__(self, doc_id: str) -> str:
        if doc_id not in self.cache:
            self.cache[doc_id] = self.fetch(doc_id)
        return self.cache[doc_id]


def describe(r: AnswerResponse) -> str:
    """What the service answered, for the failure message (the core engineer reads this)."""
    cited = [f"{c.doc_id}[{c.start}:{c.end}]" for c in r.citations]
    quote = r.citations[0].quote if r.citations else None
    return (f"answered {r.answer!r} (abstained={r.abstained}, confidence={r.confidence:.2f}, cited {cited}, "
            f"quote {quote!r}, sources_differ={r.sources_differ})")


def names_a_doubter(text: str | None) -> bool:
    return text is not None and any(who.lower() in text.lower() for who in DOUBTERS)


def check_answer(r: AnswerResponse, text_of: Texts) -> None:
    """The example question's answer: a doubter, cited to the second seed, quoted verbatim with its title and date."""
    summary = describe(r)
    assert not r.abstained and r.answer, summary
    assert names_a_doubter(r.answer), summary
    assert r.citations and r.citations[0].doc_id.startswith(SECOND_SEED), summary
    for c in r.citations:
        assert text_of(c.doc_id)[c.start:c.end] == c.quote, f"citation {c.doc_id}[{c.start}:{c.end}] is not verbatim"
    first = r.citations[0]
    assert first.quote == r.supporting_sentence, summary
    assert text_of(first.doc_id)[r.answer_start:r.answer_end] == r.answer, summary
    assert (first.title, first.published and first.published.isoformat()) == (SECOND_TITLE, SECOND_DATE)


def check_cli_rendering(output: str, r: AnswerResponse) -> None:
    """The terminal rendering of ``r`` (already checked with ``check_answer``): answer, supporting sentence, and
    the numbered source with the cited article's date and title, then its quote."""
    lines = output.splitlines()
    assert lines[0] == r.answer and names_a_doubter(lines[0]), output
    assert lines[1] == f'  "{" ".join((r.supporting_sentence or "").split())}"', output
    assert lines[2] == "Sources:", output
    assert lines[3].startswith("  [1] ") and lines[3].endswith(f", {SECOND_DATE}: {SECOND_TITLE}"), output
    assert lines[4] == f'      "{" ".join(r.citations[0].quote.split())}"', output


# --- one service on the seeds, served on loopback, with the Slack bot talking to the stub --------------------------
@pytest.fixture(scope="module")
def stub() -> Iterator[SlackStub]:
    with SlackStub() as s:
        yield s


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, embedder, nlp, prompts, stub) -> Newsroom:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path_factory.mktemp("seeds-surfaces"), seeds_dir=SEEDS_DIR,
                             slack_bot_token="xoxb-test-token", slack_signing_secret=SECRET,
                             slack_api_url=stub.url + "/api/")
    return Newsroom.around(build_service(settings, embedder, nlp, prompts))


@pytest.fixture(scope="module")
def server(seeded: Newsroom) -> Iterator[LiveServer]:
    with LiveServer(seeded) as live:
        yield live


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def python_texts(seeded: Newsroom) -> Texts:
    return Texts(lambda doc_id: seeded.get_document(doc_id).text)


@pytest.fixture(scope="module")
def http_texts(http: httpx.Client) -> Texts:
    def fetch(doc_id: str) -> str:
        response = http.get(f"/v1/documents/{doc_id}")
        assert response.status_code == 200, response.text
        return str(response.json()["text"])

    return Texts(fetch)


# --- the Python API -----------------------------------------------------------------------------------------------
def test_python_api_ask(seeded: Newsroom, python_texts: Texts) -> None:
    check_answer(seeded.ask(QUESTION), python_texts)


def test_python_api_chat(seeded: Newsroom, python_texts: Texts) -> None:
    turn = seeded.chat(None, QUESTION)
    assert (turn.turn, turn.resolved_question) == (1, QUESTION)
    check_answer(turn, python_texts)


# --- HTTP ---------------------------------------------------------------------------------------------------------
def test_http_ask(http: httpx.Client, http_texts: Texts) -> None:
    response = http.post("/v1/ask", json={"question": QUESTION})
    assert response.status_code == 200, response.text
    body = AnswerResponse.model_validate(response.json())
    check_answer(body, http_texts)
    assert body.message.startswith(body.answer or "<no answer>")


def test_http_chat_json(http: httpx.Client, http_texts: Texts) -> None:
    response = http.post("/v1/chat", json={"message": QUESTION})
    assert response.status_code == 200, response.text
    body = ChatResponse.model_validate(response.json())
    assert (body.turn, body.resolved_question) == (1, QUESTION)
    check_answer(body, http_texts)


def test_http_chat_event_stream(http: httpx.Client, http_texts: Texts) -> None:
    with http.stream("POST", "/v1/chat", headers={"Accept": "text/event-stream"},
                     json={"message": QUESTION}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response))
    assert [e for e, _ in events] == ["resolved", "passages", "answer", "done"]
    resolved, passages, answer, done = (data for _, data in events)
    body = ChatResponse.model_validate(answer)
    assert resolved == {"conversation_id": body.conversation_id, "message": QUESTION, "resolved_question": QUESTION}
    assert passages["passages"] and [p["chunk_id"] for p in passages["passages"]] == [p.chunk_id for p in body.passages]
    assert any(p["doc_id"].startswith(SECOND_SEED) for p in passages["passages"])
    check_answer(body, http_texts)
    assert done == {"conversation_id": body.conversation_id, "turn": body.turn}


# --- the ask command ----------------------------------------------------------------------------------------------
def test_ask_command_in_process_on_the_seeded_data_dir(seeded: Newsroom, python_texts: Texts) -> None:
    """No ``--server``: the command opens the data directory itself (there is no other switch for in-process)."""
    settings = seeded.qa.settings
    where = ["--data-dir", str(settings.data_dir), "--backend", settings.backend]
    runner = CliRunner(env={"NEWSROOM_QA_SEEDS_DIR": str(SEEDS_DIR)})
    raw = runner.invoke(ask_command, ["--json", *where, QUESTION])
    assert raw.exit_code == 0, raw.output or repr(raw.exception)
    body = AnswerResponse.model_validate(json.loads(raw.stdout))
    check_answer(body, python_texts)
    shown = runner.invoke(ask_command, [*where, QUESTION])
    assert shown.exit_code == 0, shown.output or repr(shown.exception)
    check_cli_rendering(shown.stdout, body)


def test_ask_command_against_the_server(server: LiveServer, http_texts: Texts) -> None:
    runner = CliRunner()
    raw = runner.invoke(ask_command, ["--json", "--server", server.url, QUESTION])
    assert raw.exit_code == 0, raw.output or repr(raw.exception)
    body = AnswerResponse.model_validate(json.loads(raw.stdout))
    check_answer(body, http_texts)
    shown = runner.invoke(ask_command, ["--server", server.url, QUESTION])
    assert shown.exit_code == 0, shown.output or repr(shown.exception)
    check_cli_rendering(shown.stdout, body)


# --- Slack --------------------------------------------------------------------------------------------------------
def test_slack_mention(server: LiveServer, stub: SlackStub, seeded: Newsroom, python_texts: Texts) -> None:
    thread = "1716000000.000100"
    with httpx.Client(base_url=server.url, timeout=60) as slack:
        assert post_mention(slack, QUESTION, ts=thread).status_code == 200
    [reply] = replies_in(stub, thread, 1)
    # What the bot showed is stored as the conversation's turn: check it like every other surface, then its blocks.
    [turn] = seeded.chat_service.get(f"slack:{CHANNEL}:{thread}").history
    assert turn.resolved_question == QUESTION
    shown = turn.response
    check_answer(shown, python_texts)
    blocks = reply["blocks"]
    assert blocks[0]["text"]["text"] == f"*{escape(shown.answer or '')}*" and names_a_doubter(blocks[0]["text"]["text"])
    assert blocks[1]["text"]["text"] == "> " + escape(flatten(shown.supporting_sentence or "", QUOTE_CHARS))
    sources = blocks[2]["text"]["text"].splitlines()
    assert sources[0] == "*Sources*"
    assert sources[1].startswith("1. ") and SECOND_TITLE in sources[1] and sources[1].endswith(f", {SECOND_DATE}")
    assert sources[2] == "> " + escape(flatten(shown.citations[0].quote, QUOTE_CHARS))
    assert reply["text"].startswith(shown.answer or "<no answer>") and SECOND_DATE in reply["text"]


# --- the chat page in a browser -----------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_chat_page(server: LiveServer) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            page.fill("#message", QUESTION)
            page.press("#message", "Enter")
            turn = page.locator("#log > li").first
            turn.locator(".answer, .abstain, .error").first.wait_for(timeout=60_000)
            assert turn.locator(".abstain, .error").count() == 0, turn.inner_text()
            answer = turn.locator(".answer strong").inner_text()
            assert names_a_doubter(answer), turn.inner_text()
            chip = turn.locator(".chip").first
            assert chip.get_attribute("data-doc", timeout=5_000).startswith(SECOND_SEED), turn.inner_text()
            assert chip.get_attribute("title") == SECOND_TITLE and chip.inner_text().endswith(f", {SECOND_DATE}")
            chip.click()
            highlight = page.locator("#source-text mark#highlight")
            sync_api.expect(highlight).to_have_text(turn.locator(".supporting").inner_text())  # text[start:end]
            sync_api.expect(page.locator("#source-title")).to_have_text(SECOND_TITLE)
            sync_api.expect(page.locator("#source-meta")).to_contain_text(SECOND_DATE)
            assert errors == [], f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()
