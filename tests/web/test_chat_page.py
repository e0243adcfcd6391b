"""The chat page in a real browser: Debian's Chromium driven by Playwright against the real service on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from index.models import DocumentIn
from tests.conftest import SEEDS_DIR, LiveServer, build_service, make_settings

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api")

HOSTILE = DocumentIn(
    id="ravensholm-library",
    title="Ravensholm council approves library budget <b>bold</b>",
    source="Test Gazette",
    published="2024-05-02",
    text="Ravensholm council approved a library budget of 4 million crowns on Friday.\n\n"
         "<script>window.__pwned = 'script';</script>\n\n"
         "<img src=x onerror=\"window.__pwned = 'img'\"> The new library will open in the old tram depot.",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder, nlp, prompts) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    service = build_service(make_settings(tmp_path_factory.mktemp("web-data")), embedder, nlp, prompts)
    service.add_documents([HOSTILE])
    assert "<script>" in service.get_document(HOSTILE.id).text  # stored as the text it is
    with LiveServer(service) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert all(url.startswith(server.url) for url in requested), "the page loaded something from elsewhere"


def ask(page, question: str):  # type: ignore[no-untyped-def]
    turns = page.locator("#log > li")
    before = turns.count()
    page.fill("#message", question)
    page.press("#message", "Enter")
    turn = turns.nth(before)
    turn.locator(".answer, .abstain, .error").first.wait_for(timeout=60_000)
    return turn


def test_ask_cite_open_follow_up_and_abstain(page, server, tmp_path):
    expect = playwright_api.expect
    turn = ask(page, "Who doubted the pipeline claim?")
    answer = turn.locator(".answer strong").inner_text()
    assert "Marren Water Trust" in answer or "Lindqvist" in answer
    api = httpx.post(server.url + "/v1/ask", json={"question": "Who doubted the pipeline claim?"}, timeout=60).json()
    assert answer == api["answer"]
    expect(turn.locator(".supporting")).to_have_text(api["supporting_sentence"])
    chips = turn.locator(".chip")
    assert chips.count() == len(api["citations"])
    first = api["citations"][0]
    assert chips.first.inner_text().startswith(f"[1] {first['source']}")

    chips.first.click()
    highlight = page.locator("#source-text mark#highlight")
    expect(highlight).to_have_text(first["quote"])
    expect(page.locator("#source-title")).to_have_text(first["title"])
    expect(highlight).to_be_in_viewport()

    ask(page, "Who is the mayor of Vellmont?")
    follow = ask(page, "What did he say the city would pay for?")
    expect(follow.locator(".resolved")).to_have_text("Answered as: What did Peter Amsel say the city would pay for?")
    assert "water samples" in follow.locator(".answer strong").inner_text()

    nothing = ask(page, "What is the capital of France?")
    expect(nothing.locator(".abstain")).to_contain_text("Not in the archive")
    assert nothing.locator(".passage").count() >= 1  # the nearest passages are shown with the abstention

    nothing.locator(".feedback-up").click()
    expect(nothing.locator(".feedback-up")).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=str(tmp_path / "chat-page.png"), full_page=True)
    assert (tmp_path / "chat-page.png").stat().st_size > 10_000


def test_markup_inside_a_document_is_shown_as_text_and_never_runs(page):
    turn = ask(page, "What budget did Ravensholm council approve?")
    assert "4 million crowns" in turn.locator(".answer strong").inner_text()
    turn.locator(".chip").first.click()
    source = page.locator("#source-text")
    playwright_api.expect(source).to_contain_text("<script>window.__pwned = 'script';</script>")
    assert source.locator("script, img, b").count() == 0
    assert page.locator("#source-title").inner_text().endswith("<b>bold</b>")
    assert page.evaluate("window.__pwned") is None


def test_the_page_is_served_with_a_strict_content_security_policy(server):
    response = httpx.get(server.url + "/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert httpx.get(server.url + asset).status_code == 200


SEEDS_PRESENT = bool(list(SEEDS_DIR.glob("000_*")) and list(SEEDS_DIR.glob("004_*")))


@pytest.mark.skipif(not SEEDS_PRESENT, reason="the seed articles 000_* and 004_* are not in seeds/")
def test_the_example_question_on_the_seeds(browser, tmp_path_factory, embedder, nlp, prompts):
    service = build_service(make_settings(tmp_path_factory.mktemp("web-seeds"), seeds_dir=SEEDS_DIR), embedder, nlp,
                            prompts)
    with LiveServer(service) as live:
        context = browser.new_context()
        page = context.new_page()
        page.goto(live.url + "/")
        turn = ask(page, "Who doubted the crematorium claim?")
        assert turn.locator(".answer strong").inner_text()
        turn.locator(".chip").first.click()
        playwright_api.expect(page.locator("#source-text mark#highlight")).to_be_in_viewport()
        follow = ask(page, "What did they say about the photographs?")
        assert follow.locator(".resolved").inner_text().startswith("Answered as: What did ")
        context.close()
