"""Chat: follow-ups answered end to end, stored conversations, server-sent events read with httpx, feedback."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from click.testing import CliRunner

from index.errors import InvalidInput, ModelUnavailable
from service.cli import cli
from service.conversation.conversations import ConversationNotFound
from service.newsroom import Newsroom
from service.schemas import ChatResponse
from tests.conftest import API_KEY, LiveServer
from tests.streams import sse

AUTH = {"Authorization": f"Bearer {API_KEY}"}

pytestmark = pytest.mark.integration


def assert_quotes_verbatim(newsroom: Newsroom, answer: ChatResponse) -> None:
    for c in answer.citations:
        assert newsroom.qa.get_document(c.doc_id).text[c.start:c.end] == c.quote


def test_a_follow_up_is_resolved_then_answered(newsroom):
    first = newsroom.chat_service.turn(None, "Who is the mayor of Vellmont?")
    assert first.answer == "Peter Amsel" and first.turn == 1
    assert first.resolved_question == "Who is the mayor of Vellmont?"
    second = newsroom.chat_service.turn(first.conversation_id, "What did he say the city would pay for?")
    assert second.resolved_question == "What did Peter Amsel say the city would pay for?"
    assert second.turn == 2 and second.conversation_id == first.conversation_id
    assert second.answer is not None and "water samples" in second.answer
    assert_quotes_verbatim(newsroom, second)


def test_a_she_follow_up_finds_the_answer_in_the_other_article(newsroom):
    first = newsroom.chat_service.turn(None, "Who is the head of the regional environment office?")
    assert first.answer == "Clara Voss"
    second = newsroom.chat_service.turn(first.conversation_id, "What did she call on the port's shareholders to do?")
    assert second.resolved_question == "What did Clara Voss call on the port's shareholders to do?"
    assert second.answer is not None and "independent inspection" in second.answer
    assert_quotes_verbatim(newsroom, second)


def test_conversations_are_stored_listed_and_deleted(newsroom):
    first = newsroom.chat_service.turn("desk-7:story-42", "Who doubted the pipeline claim?")
    newsroom.chat_service.turn("desk-7:story-42", "And who denied the accusation?")
    listed = {c.id: c for c in newsroom.chat_service.list().conversations}
    assert listed[first.conversation_id].turns == 2
    assert listed[first.conversation_id].title == "Who doubted the pipeline claim?"
    detail = newsroom.chat_service.get("desk-7:story-42")
    assert [t.resolved_question for t in detail.history] == ["Who doubted the pipeline claim?",
                                                            "Who denied the accusation?"]
    assert detail.history[1].response.answer == first.answer or detail.history[1].response.answer is not None
    newsroom.chat_service.delete("desk-7:story-42")
    with pytest.raises(ConversationNotFound):
        newsroom.chat_service.get("desk-7:story-42")
    with pytest.raises(ConversationNotFound):
        newsroom.chat_service.delete("desk-7:story-42")


def test_an_empty_message_is_refused_before_anything_is_stored(newsroom):
    before = newsroom.chat_service.list().total
    with pytest.raises(InvalidInput, match="message is empty"):
        newsroom.chat_service.events(None, "   ")
    assert newsroom.chat_service.list().total == before


def test_chat_api_and_conversation_endpoints(client):
    body = client.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"}).json()
    assert body["answer"] == "Peter Amsel" and body["turn"] == 1
    conv = body["conversation_id"]
    again = client.post("/v1/chat", json={"conversation_id": conv, "message": "What did he say?"}).json()
    assert again["resolved_question"] == "What did Peter Amsel say?" and again["turn"] == 2
    assert again["conversation_id"] == conv
    listing = client.get("/v1/conversations", params={"limit": 1000}).json()
    assert conv in {c["id"] for c in listing["conversations"]} and listing["total"] >= 1
    detail = client.get(f"/v1/conversations/{conv}").json()
    assert [t["message"] for t in detail["history"]] == ["Who is the mayor of Vellmont?", "What did he say?"]
    assert client.delete(f"/v1/conversations/{conv}").status_code == 401  # deleting needs the write scope
    assert client.delete(f"/v1/conversations/{conv}", headers=AUTH).status_code == 204
    missing = client.get(f"/v1/conversations/{conv}")
    assert missing.status_code == 404 and conv in missing.json()["detail"]
    assert client.delete(f"/v1/conversations/{conv}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("payload", "detail"), [
    ({"message": ""}, "message is empty"),
    ({"message": "Who?", "conversation_id": "../etc/passwd"}, "conversation_id: String should match pattern"),
    ({"message": "Who?", "extra": 1}, "extra: Extra inputs are not permitted"),
])
def test_bad_chat_requests_get_a_422_even_when_streaming(client, payload, detail):
    response = client.post("/v1/chat", json=payload, headers={"Accept": "text/event-stream"})
    assert response.status_code == 422 and detail in response.json()["detail"]


def test_streamed_turn_sends_resolved_passages_answer_done(client):
    first = client.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"}).json()
    with client.stream("POST", "/v1/chat", headers={"Accept": "text/event-stream"},
                       json={"conversation_id": first["conversation_id"], "message": "What did he say?"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response))
    assert [e for e, _ in events] == ["resolved", "passages", "answer", "done"]
    resolved, passages, answer, done = (data for _, data in events)
    assert resolved == {"conversation_id": first["conversation_id"], "message": "What did he say?",
                        "resolved_question": "What did Peter Amsel say?"}
    assert passages["passages"] and all(p["text"] for p in passages["passages"])
    parsed = ChatResponse.model_validate(answer)
    assert parsed.turn == 2 and parsed.resolved_question == "What did Peter Amsel say?"
    assert [p["chunk_id"] for p in passages["passages"]] == [p.chunk_id for p in parsed.passages]
    assert done == {"conversation_id": first["conversation_id"], "turn": 2}


class BrokenReader:
    """A reader whose model went missing after start-up: the failure happens mid-stream, after retrieval."""

    abstain_below = 0.5

    def run(self, *args: object, **kwargs: object) -> None:
        raise ModelUnavailable("the reader model could not be loaded: weights file is missing")


def test_a_failure_mid_stream_arrives_as_an_error_event(service):
    broken = copy.copy(service)
    broken.reader = BrokenReader()
    with LiveServer(Newsroom.around(broken)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", "/v1/chat", headers={"Accept": "text/event-stream"},
                           json={"message": "Who is the mayor of Vellmont?"}) as response:
            events = list(sse(response))
        plain = client.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"})
    assert [e for e, _ in events] == ["resolved", "passages", "error"]
    assert events[-1][1] == {"status": 503, "detail": "the reader model could not be loaded: weights file is missing"}
    assert plain.status_code == 503 and "weights file is missing" in plain.json()["detail"]


def test_feedback_is_stored_and_exported_as_an_evaluation_set(client, newsroom):
    answer = client.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"}).json()
    up = client.post("/v1/feedback", json={
        "rating": "up", "question": answer["resolved_question"], "answer": answer["answer"],
        "citations": answer["citations"], "conversation_id": answer["conversation_id"], "turn": answer["turn"]})
    assert up.status_code == 201 and up.json()["id"] >= 1
    down = client.post("/v1/feedback", json={"rating": "down", "question": "Who doubted the pipeline claim?",
                                             "answer": "Vellmont", "comment": "wrong group"})
    assert down.status_code == 201
    bad = client.post("/v1/feedback", json={"rating": "meh", "question": "Who?"})
    assert bad.status_code == 422 and "rating" in bad.json()["detail"]

    settings = newsroom.qa.settings
    env = {"NEWSROOM_QA_BACKEND": settings.backend, "NEWSROOM_QA_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(cli, ["feedback", "export", "--data-dir", str(settings.data_dir)], env=env)
    assert result.exit_code == 0, result.output
    items = {item["id"]: item for item in map(json.loads, result.output.splitlines())}
    liked = items[f"fb{up.json()['id']}"]
    assert liked["q"] == "Who is the mayor of Vellmont?" and liked["any"] == ["Peter Amsel"]
    assert liked["doc"] == answer["citations"][0]["doc_id"] and liked["rating"] == "up"
    disliked = items[f"fb{down.json()['id']}"]
    assert disliked["any"] == [] and disliked["wrong"] == ["Vellmont"] and disliked["comment"] == "wrong group"
    only_down = CliRunner().invoke(cli, ["feedback", "export", "--rating", "down", "--data-dir",
                                         str(settings.data_dir)], env=env)
    assert all(json.loads(line)["rating"] == "down" for line in only_down.output.splitlines())
