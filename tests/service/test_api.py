"""The HTTP API served for real by uvicorn on 127.0.0.1, exercised with httpx."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from index.embedding.embedder import Embedder
from tests.conftest import API_KEY, LiveServer, build_service, make_settings, sharing_embedder

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def assert_verbatim(client: httpx.Client, body: dict) -> None:
    texts: dict[str, str] = {}
    for c in body["citations"]:
        if c["doc_id"] not in texts:
            texts[c["doc_id"]] = client.get(f"/v1/documents/{c['doc_id']}").json()["text"]
        assert texts[c["doc_id"]][c["start"]:c["end"]] == c["quote"]


def test_healthz_and_docs(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["documents"] == 2
    assert health["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert client.get("/docs").status_code == 200
    assert "/v1/ask" in client.get("/openapi.json").json()["paths"]


def test_search_shape(client):
    r = client.post("/v1/search", json={"query": "aerial photographs", "top_k": 2})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 2
    assert {"doc_id", "chunk_id", "title", "source", "published", "url", "text", "start", "end",
            "score"} <= set(results[0])
    assert results[0]["scores"] is None and results[0]["also_in"] == []  # explain is off by default


def test_ask_shape_and_citation_invariant(client):
    r = client.post("/v1/ask", json={"question": "Who doubted the pipeline claim?"})
    assert r.status_code == 200
    body = r.json()
    assert {"answer", "answer_start", "answer_end", "abstained", "confidence", "supporting_sentence", "citations",
            "passages", "sources_differ", "alternatives"} <= set(body)
    assert body["abstained"] is False
    assert "Marren Water Trust" in body["answer"] or "Lindqvist" in body["answer"]
    assert body["citations"][0]["quote"] == body["supporting_sentence"]
    assert_verbatim(client, body)


def test_ask_abstains_over_http(client):
    body = client.post("/v1/ask", json={"question": "What is the capital of France?"}).json()
    assert body["abstained"] is True and body["answer"] is None and body["citations"] == []
    assert body["passages"]


def test_chat_contract(client):
    body = client.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"}).json()
    assert body["answer"] == "Peter Amsel" and body["conversation_id"]
    assert_verbatim(client, body)
    again = client.post("/v1/chat", json={"conversation_id": body["conversation_id"],
                                          "message": "Who doubted the pipeline claim?"}).json()
    assert again["conversation_id"] == body["conversation_id"]
    assert_verbatim(client, again)


@pytest.mark.parametrize(("payload", "status", "detail"), [
    ({"question": ""}, 422, "question is empty"),
    ({"question": "   "}, 422, "question is empty"),
    ({"question": "x" * 100_000}, 422, "100000 characters"),
    ({"question": 42}, 422, "question: Input should be a valid string"),
    ({"question": "Who?", "top_k": "many"}, 422, "top_k: Input should be a valid integer"),
    ({"question": "Who?", "top_k": 0}, 422, "top_k must be between 1 and 50"),
    ({"question": "Who?", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({}, 422, "question: Field required"),
])
def test_bad_ask_requests_get_a_clear_4xx(client, payload, status, detail):
    r = client.post("/v1/ask", json=payload)
    assert r.status_code == status
    assert detail in r.json()["detail"]


def test_non_json_body_is_refused(client):
    r = client.post("/v1/ask", content=b"question=who", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in r.json()["detail"]


def test_unknown_document_is_404(client):
    r = client.get("/v1/documents/no-such-doc")
    assert r.status_code == 404 and r.json()["detail"] == "no document with id 'no-such-doc'"


@pytest.fixture(scope="module")
def writable(tmp_path_factory, settings_for, embedder, nlp, prompts):
    service = build_service(settings_for(tmp_path_factory.mktemp("writable")), embedder, nlp, prompts)
    with LiveServer(service) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def doc_ids(client: httpx.Client) -> list[str]:
    return [d["id"] for d in client.get("/v1/documents").json()["documents"]]


def test_add_replace_read_delete_documents(writable):
    doc = {"id": "w1", "title": "Dam opens", "text": "The new dam opened on Friday. Engineer Ada Lune led the work.",
           "source": "Test Wire", "published": "2024-05-01", "url": "https://example.org/dam"}
    r = writable.post("/v1/documents", json={"documents": [doc]}, headers=AUTH)
    assert r.status_code == 201
    assert r.json()["documents"] == [{"id": "w1", "title": "Dam opens", "chunks": 1, "replaced": False,
                                      "unchanged": False}]
    body = writable.post("/v1/ask", json={"question": "Who led the work on the dam?"}).json()
    assert body["answer"] == "Ada Lune" and body["citations"][0]["doc_id"] == "w1"
    doc["text"] = "The new dam opened on Saturday. Engineer Bo Kay led the work."
    r = writable.post("/v1/documents", json={"documents": [doc]}, headers=AUTH)
    assert r.json()["documents"][0]["replaced"] is True
    assert "Saturday" in writable.get("/v1/documents/w1").json()["text"]
    assert doc_ids(writable).count("w1") == 1
    assert writable.delete("/v1/documents/w1", headers=AUTH).status_code == 204
    assert writable.get("/v1/documents/w1").status_code == 404
    assert writable.delete("/v1/documents/w1", headers=AUTH).status_code == 404


def test_upload_files(writable):
    story = b"# Harvest report\n\nFarmers in Dell picked 300 tonnes of apples."
    files = [("files", ("story.md", story, "text/markdown")),
             ("files", ("batch.jsonl", json.dumps({"id": "j1", "title": "J", "text": "Jay ran."}).encode(),
                        "application/jsonl"))]
    r = writable.post("/v1/documents/upload", files=files, headers=AUTH)
    assert r.status_code == 201
    assert [d["id"] for d in r.json()["documents"]] == ["story", "j1"]
    assert "Farmers in Dell" in writable.get("/v1/documents/story").json()["text"]


def _engine_released(embedder: Embedder, seconds: float = 30.0) -> bool:
    """Whether the OpenVINO bulk engine is dropped within ``seconds`` (the release runs after the response)."""
    deadline = time.monotonic() + seconds
    while embedder.batch_engine_loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    return not embedder.batch_engine_loaded


@pytest.mark.parametrize("release", [True, False])
def test_the_server_drops_the_bulk_engine_after_a_write_unless_told_to_keep_it(tmp_path, embedder, nlp, prompts,
                                                                               release):
    bulk = sharing_embedder(embedder, batch_backend="openvino")  # every batch on OpenVINO, as a large upload under auto
    service = build_service(make_settings(tmp_path, release_after_write=release), bulk, nlp, prompts)
    assert bulk.batch_engine_loaded  # the seed articles were embedded on it
    with LiveServer(service) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        doc = {"id": "r1", "title": "Dam opens", "text": "The new dam opened on Friday. Engineer Ada Lune led it."}
        for text in (doc["text"], doc["text"].replace("Friday", "Monday")):
            assert c.post("/v1/documents", json={"documents": [{**doc, "text": text}]}, headers=AUTH).status_code \
                == 201
            assert bulk.last_batch_engine == "openvino"  # the engine is loaded again by the next write
            assert _engine_released(bulk, 30.0 if release else 1.0) is release
        assert "Monday" in c.get("/v1/documents/r1").json()["text"]
        body = c.post("/v1/ask", json={"question": "Who led the work on the dam?"}).json()
        assert body["answer"] == "Ada Lune" and body["citations"][0]["doc_id"] == "r1"
        assert c.delete("/v1/documents/r1", headers=AUTH).status_code == 204


@pytest.mark.parametrize(("name", "data", "status", "detail"), [
    ("report.pdf", b"%PDF-1.4", 415, "unsupported file type '.pdf'"),
    ("latin.txt", "Caf\u00e9".encode("latin-1"), 415, "not valid UTF-8"),
    ("empty.txt", b"   \n", 422, "text"),
    ("bad.jsonl", b"{nope", 422, "line 1: not valid JSON"),
])
def test_bad_uploads_are_refused_and_lose_nothing(writable, name, data, status, detail):
    before = doc_ids(writable)
    good = ("files", ("good.txt", b"Good story\n\nA fine article.", "text/plain"))
    r = writable.post("/v1/documents/upload", files=[good, ("files", (name, data, "application/octet-stream"))],
                      headers=AUTH)
    assert r.status_code == status and detail in r.json()["detail"]
    assert doc_ids(writable) == before  # all or none: the good file was not stored either


def test_bad_document_json_is_refused(writable):
    before = doc_ids(writable)
    r = writable.post("/v1/documents", json={"documents": [{"title": "No text"}]}, headers=AUTH)
    assert r.status_code == 422 and "documents.0.text: Field required" in r.json()["detail"]
    r = writable.post("/v1/documents", json={"documents": [{"id": "../etc", "title": "t", "text": "x"}]},
                      headers=AUTH)
    assert r.status_code == 422 and "document id" in r.json()["detail"]
    assert doc_ids(writable) == before


def test_writes_need_the_right_key(writable):
    doc = {"documents": [{"title": "t", "text": "x"}]}
    r = writable.post("/v1/documents", json=doc)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"]
    r = writable.post("/v1/documents", json=doc, headers={"Authorization": "Bearer wrong-key-wrong-key"})
    assert r.status_code == 401 and r.json()["detail"] == "The API key given is not valid for this service."
    assert writable.delete("/v1/documents/002_harbour-doubts").status_code == 401


def test_writes_refused_when_no_key_is_configured(tmp_path, settings_for, embedder, nlp, prompts):
    service = build_service(settings_for(tmp_path, api_key=None), embedder, nlp, prompts)
    with LiveServer(service) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/documents", json={"documents": [{"title": "t", "text": "x"}]}, headers=AUTH)
        assert r.status_code == 403 and "Set NEWSROOM_QA_API_KEY" in r.json()["detail"]
        assert c.post("/v1/ask", json={"question": "Who is the mayor of Vellmont?"}).status_code == 200


def test_persistence_across_restart(tmp_path, settings_for, embedder, nlp, prompts):
    settings = settings_for(tmp_path)
    first = build_service(settings, embedder, nlp, prompts)
    with LiveServer(first) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/documents", json={"documents": [{"id": "keep", "title": "Kept", "text": "Kept across restarts."}]},
               headers=AUTH).raise_for_status()
    second = build_service(settings, embedder, nlp, prompts)  # a new process would do the same
    with LiveServer(second) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        assert "Kept across restarts." in c.get("/v1/documents/keep").json()["text"]
        assert c.get("/healthz").json()["documents"] == 3
