"""Queries over HTTP keep being answered, from consistent snapshots, while another client adds, replaces and
deletes articles: no errors, and every citation and passage quotes the version of the article it came from."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import API_KEY, LiveServer, build_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
READERS, WRITES = 4, 10


def article(n: int) -> dict[str, str]:
    return {"id": f"pilot-{n % 3}", "title": f"Harbour pilot report {n}",
            "text": f"The harbour pilot Anders Holm{n} said the east pier needs {n + 3} new moorings. "
                    f"He told the council on day {n} that barges wait {n + 10} hours to unload."}


def test_reads_during_writes_are_consistent(tmp_path, settings_for, embedder, nlp, prompts):
    service = build_service(settings_for(tmp_path), embedder, nlp, prompts)
    versions: dict[str, set[str]] = {d.id: {service.get_document(d.id).text}
                                     for d in service.list_documents().documents}
    lock = threading.Lock()
    errors: list[str] = []
    answered = [0]
    writing_done = threading.Event()

    def check_quotes(body: dict, kind: str) -> None:
        items = body.get("citations", []) + body.get("passages", []) + body.get("results", [])
        for item in items:
            quote = item.get("quote", item.get("text"))
            with lock:
                texts = set(versions.get(item["doc_id"], set()))
            if not any(t[item["start"]:item["end"]] == quote for t in texts):
                errors.append(f"{kind}: {item['doc_id']}[{item['start']}:{item['end']}] matches no stored version")

    def writer(url: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                for n in range(WRITES):
                    doc = article(n)
                    with lock:  # registered before the write: a reader may see it as soon as it is published
                        versions.setdefault(doc["id"], set()).add(doc["text"])
                    response = client.post("/v1/documents", json={"documents": [doc]}, headers=AUTH)
                    if response.status_code != 201:
                        errors.append(f"add {doc['id']}: {response.status_code} {response.text}")
                    stored = client.get(f"/v1/documents/{doc['id']}").json()["text"]
                    if stored != doc["text"]:
                        errors.append(f"{doc['id']} was stored as {stored!r}")
                    if n % 4 == 3:
                        gone = client.delete(f"/v1/documents/pilot-{(n + 1) % 3}", headers=AUTH)
                        if gone.status_code not in (204, 404):
                            errors.append(f"delete: {gone.status_code} {gone.text}")
        finally:
            writing_done.set()

    def reader(url: str, n: int) -> None:
        questions = ["How many new moorings does the east pier need?", "Who is the mayor of Vellmont?",
                     "How long do barges wait to unload?"]
        with httpx.Client(base_url=url, timeout=120) as client:
            i = 0
            while not writing_done.is_set() or i < 3:
                q = questions[(i + n) % len(questions)]
                for path, payload in (("/v1/ask", {"question": q}), ("/v1/search", {"query": q})):
                    response = client.post(path, json=payload)
                    if response.status_code != 200:
                        errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                        continue
                    check_quotes(response.json(), path)
                    with lock:
                        answered[0] += 1
                i += 1

    with LiveServer(service) as server:
        threads = [threading.Thread(target=writer, args=(server.url,))]
        threads += [threading.Thread(target=reader, args=(server.url, n)) for n in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    assert errors == []
    assert answered[0] >= READERS * 3 * 2
