"""Keys and scopes, limits, rate limiting, hostile input and observability, against a real server on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from index.errors import QAError
from service.api.auth import KeyRing
from tests.conftest import API_KEY, LiveServer, build_service, make_settings

pytestmark = pytest.mark.integration

READER_KEY = "reader-key-0123456789abcdef"
WRITER_KEY = "writer-key-0123456789abcdef"
HASHED_KEY = "hashed-key-0123456789abcdef"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "desk-reader"
key = "{READER_KEY}"
scopes = ["read"]

[[keys]]
name = "ingest-bot"
key = "{WRITER_KEY}"
scopes = ["read", "write"]

[[keys]]
name = "hashed"
key_sha256 = "{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}"
scopes = ["read"]
""")
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory, embedder, nlp, prompts, keys_file) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path_factory.mktemp("secured"), api_keys_file=keys_file, public_reads=False,
                             rate_limit=None, rate_limit_anonymous=None, max_upload_files=2)
    with LiveServer(build_service(settings, embedder, nlp, prompts)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


ASK = {"question": "Who is the mayor of Vellmont?"}
DOC = {"documents": [{"id": "scoped-doc", "title": "Scoped", "text": "The scoped test article was written."}]}


def test_reads_need_a_key_when_not_public(secured):
    refused = secured.post("/v1/ask", json=ASK)
    assert refused.status_code == 401 and "'read' scope" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    for key in (READER_KEY, WRITER_KEY, HASHED_KEY, API_KEY):
        assert secured.post("/v1/ask", json=ASK, headers=auth(key)).status_code == 200


def test_a_wrong_key_is_refused_with_401(secured):
    wrong = secured.post("/v1/ask", json=ASK, headers=auth("not-a-key-0123456789abcdef"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "The API key given is not valid for this service."


def test_each_scope_allows_only_its_operations(secured):
    no_write = secured.post("/v1/documents", json=DOC, headers=auth(READER_KEY))
    assert no_write.status_code == 403
    assert no_write.json()["detail"] == ("The API key 'desk-reader' may not add articles or delete conversations: "
                                         "that needs the 'write' scope.")
    assert secured.post("/v1/documents", json=DOC, headers=auth(WRITER_KEY)).status_code == 201
    no_admin = secured.delete("/v1/documents/scoped-doc", headers=auth(WRITER_KEY))
    assert no_admin.status_code == 403 and "'admin' scope" in no_admin.json()["detail"]
    assert secured.get("/v1/documents/scoped-doc", headers=auth(READER_KEY)).status_code == 200
    assert secured.delete("/v1/documents/scoped-doc", headers=auth(API_KEY)).status_code == 204  # all scopes
    chat = secured.post("/v1/chat", json={"message": "Who is the mayor of Vellmont?"}, headers=auth(READER_KEY))
    conv = chat.json()["conversation_id"]
    assert secured.delete(f"/v1/conversations/{conv}", headers=auth(READER_KEY)).status_code == 403
    assert secured.delete(f"/v1/conversations/{conv}", headers=auth(WRITER_KEY)).status_code == 204


def test_upload_count_is_limited(secured):
    files = [("files", (f"a{i}.txt", b"Title\n\nSome article text here.", "text/plain")) for i in range(3)]
    response = secured.post("/v1/documents/upload", files=files, headers=auth(WRITER_KEY))
    assert response.status_code == 413 and "3 files uploaded; at most 2" in response.json()["detail"]


def test_keys_never_reach_the_logs(secured, caplog):
    with caplog.at_level(logging.DEBUG):
        secured.post("/v1/ask", json=ASK, headers=auth(READER_KEY))
        secured.post("/v1/ask", json=ASK, headers=auth("not-a-key-0123456789abcdef"))
        secured.post("/v1/documents", json=DOC, headers=auth(READER_KEY))
    access = [r for r in caplog.records if r.name == "service.access"]
    assert access and {getattr(r, "key", None) for r in access} >= {"desk-reader"}
    dumped = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (READER_KEY, "not-a-key-0123456789abcdef"):
        assert secret not in dumped


def test_a_bad_keys_file_is_a_clear_start_up_error(tmp_path):
    bad = tmp_path / "keys.toml"
    bad.write_text('[[keys]]\nname = "x"\nkey = "short"\nscopes = ["read"]\n')
    with pytest.raises(QAError, match=r"keys.toml is not a valid keys file: keys.0.key: String should have at "
                                      r"least 16 characters") as refused:
        KeyRing.load(None, bad)
    assert "short" not in str(refused.value)  # the offending value may be a key: never echoed
    with pytest.raises(QAError, match="does not exist"):
        KeyRing.load(None, tmp_path / "missing.toml")
    bad.write_text('[[keys]]\nname = "x"\nkey = "0123456789abcdefgh"\nscopes = ["root"]\n')
    with pytest.raises(QAError, match="scopes"):
        KeyRing.load(None, bad)


def test_rate_limit_answers_429_with_retry_after(tmp_path, embedder, nlp, prompts):
    settings = make_settings(tmp_path, rate_limit="3/minute", rate_limit_anonymous="2/minute")
    with LiveServer(build_service(settings, embedder, nlp, prompts)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        statuses = [client.post("/v1/search", json={"query": "harbour"}, headers=auth(API_KEY)).status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.post("/v1/search", json={"query": "harbour"}, headers=auth(API_KEY))
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["detail"].startswith("Too many requests from key 'api-key': the limit is 3 per 1 minute")
        anonymous = [client.post("/v1/search", json={"query": "harbour"}).status_code for _ in range(3)]
        assert anonymous == [200, 200, 429]  # counted apart from the key


@pytest.mark.parametrize(("body", "status"), [
    ("[" * 100_000 + "]" * 100_000, 400),  # deeply nested JSON: refused by the parser, not a RecursionError
    ('{"question": "Who is \\u0000 the mayor\\u0007 of Vellmont?"}', 200),  # control characters
    (b'{"question": "\xff\xfe broken utf-8"}', 400),
    ('{"question": "Who?", "question": "twice"}', 200),
])
def test_hostile_request_bodies_never_cause_a_server_error(client, body, status):
    response = client.post("/v1/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["detail"] == "There was an error parsing the body"


def test_hostile_uploads_are_refused_or_cleaned(secured):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.txt", "0" * 10_000_000)  # 10 MB that compress to a few kB
    zipped = secured.post("/v1/documents/upload", headers=auth(WRITER_KEY),
                          files=[("files", ("bomb.zip", archive.getvalue(), "application/zip"))])
    assert zipped.status_code == 415 and "bomb.zip" in zipped.json()["detail"]
    page = (b"<html><head><script>alert('x')</script></head><body><article><h1>Tram depot library</h1>"
            b"<p>The council turned the old tram depot into a library, officials said on Monday.</p>"
            b"<p onclick=\"steal()\">It opens in May.</p></article></body></html>")
    stored = secured.post("/v1/documents/upload", headers=auth(WRITER_KEY),
                          files=[("files", ("../../etc/passwd.html", page, "text/html"))])
    assert stored.status_code == 201, stored.text
    doc_id = stored.json()["documents"][0]["id"]
    assert "/" not in doc_id and ".." not in doc_id
    text = secured.get(f"/v1/documents/{doc_id}", headers=auth(READER_KEY)).json()["text"]
    assert "tram depot" in text and "alert" not in text and "steal" not in text


def test_readyz_metrics_and_request_ids(client, request):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["documents"] >= 2
    client.post("/v1/ask", json={"question": "What is the capital of France?"})  # abstains
    client.post("/v1/ask", json={"question": "Who is the mayor of Vellmont?"}, headers={"X-Request-ID": "trace-0001"})
    echoed = client.post("/v1/search", json={"query": "harbour"}, headers={"X-Request-ID": "trace-0002"})
    assert echoed.headers["x-request-id"] == "trace-0002"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32  # made up when none is given
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'newsroomqa_answers_total{outcome="abstained"}' in text
    assert 'newsroomqa_answers_total{outcome="answered"}' in text
    assert 'newsroomqa_http_requests_total{method="POST",route="/v1/ask",status="200"}' in text
    assert "newsroomqa_http_request_seconds_bucket" in text and "newsroomqa_documents " in text
    segments = next(line for line in text.splitlines() if line.startswith("newsroomqa_segments "))
    if request.node.name.endswith("[faiss]"):  # the data directory's segments (PostgreSQL has none)
        assert float(segments.split()[1]) >= 1
    assert "newsroomqa_segment_merge_seconds " in text and "newsroomqa_deleted_documents " in text


def test_json_log_lines_carry_the_request_id(capsys):
    from service.api.observability import RequestIdFilter, configure_json_logging, request_id_var

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_json_logging()
        token = request_id_var.set("trace-0003")
        logging.getLogger("service.test").info("answered", extra={"route": "/v1/ask", "status": 200})
        request_id_var.reset(token)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["message"] == "answered" and line["request_id"] == "trace-0003"
        assert line["level"] == "INFO" and line["logger"] == "service.test" and line["status"] == 200
        assert any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters)
    finally:
        root.handlers[:], root.level = saved


def test_body_and_upload_sizes_are_limited(tmp_path, embedder, nlp, prompts):
    settings = make_settings(tmp_path, max_request_bytes=4096, max_upload_bytes=1024)
    with LiveServer(build_service(settings, embedder, nlp, prompts)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        big = client.post("/v1/ask", json={"question": "x" * 5000})
        assert big.status_code == 413 and big.json()["detail"] == "request body larger than 4096 bytes"
        upload = client.post("/v1/documents/upload", headers=auth(API_KEY),
                             files=[("files", ("long.txt", b"Title\n\n" + b"word " * 400, "text/plain"))])
        assert upload.status_code == 413
        assert upload.json()["detail"] == "long.txt: larger than the 1024 byte upload limit"
        assert client.get("/v1/documents", params={"limit": 1000}).json()["total"] == 2  # nothing was stored
