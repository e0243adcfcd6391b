"""How many network round trips a search on the postgres backend makes, counted on the wire.

A TCP proxy on 127.0.0.1 sits between the store and PostgreSQL and counts each time the server starts answering
after the client has sent something: one round trip, however many statements a pipeline carried.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from index.models import Filters
from index.postgres.store import PgStore
from index.retrieval import RetrievalOptions, retrieve
from tests.index.test_pg_store import DIM, corpus

pytest.importorskip("psycopg")


class CountingProxy:
    """Forwards 127.0.0.1:port to the server; ``round_trips`` counts client-to-server turns answered."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.round_trips = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"last": "server"}
            threading.Thread(target=self._pump, args=(client, server, "client", state), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "server", state), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, side: str, state: dict[str, str]) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if side == "server" and state["last"] == "client":
                        self.round_trips += 1
                    state["last"] = side
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        with self._lock:
            self.round_trips = 0

    def close(self) -> None:
        self.listener.close()


@pytest.fixture()
def proxied(pg_dsn: str) -> Iterator[tuple[PgStore, CountingProxy]]:
    port = int(pg_dsn.split("@127.0.0.1:")[1].split("/")[0])
    proxy = CountingProxy(port)
    store = PgStore(pg_dsn.replace(f":{port}/", f":{proxy.port}/"), "m", DIM)
    store.write(upserts=corpus(60))
    yield store, proxy
    store.close()
    proxy.close()


@pytest.mark.parametrize("filters", [None, Filters(sources=["Wire"])])
def test_a_search_takes_three_round_trips(proxied, filters):  # type: ignore[no-untyped-def]
    """Statistics of the query words; candidates with every score in one statement (HNSW settings pipelined
    with it); passages with their articles and sentences in one pipelined transaction. The same steps through
    the snapshot's primitives, one request each, take seven."""
    store, proxy = proxied
    rng = np.random.default_rng(3)
    options = RetrievalOptions(doc_weight=0.6, dense_doc_weight=0.3)
    for query in ("harbour dredging contract", "Sednaya prison witness", "flood bridge mayor"):
        vector = rng.normal(size=DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        retrieve(store.snapshot(), query, vector, 5, filters=filters, options=options)  # fills per-write caches
        proxy.reset()
        found = retrieve(store.snapshot(), query, vector, 5, filters=filters, options=options)
        assert found and all(filters is None or p.source == "Wire" for p in found)
        assert proxy.round_trips == 3, query


def test_a_write_elsewhere_costs_one_more_round_trip_for_the_variant_words(proxied):  # type: ignore[no-untyped-def]
    """The rare-word list behind spelling variants is kept per write generation: after another write the first
    query with a rare word reads it again (one more round trip), the next does not."""
    store, proxy = proxied
    vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    retrieve(store.snapshot(), "Sednaya prison", vector, 5)
    store.write(upserts=corpus(61)[60:])
    proxy.reset()
    retrieve(store.snapshot(), "Sednaya prison", vector, 5)
    assert proxy.round_trips == 4
    proxy.reset()
    retrieve(store.snapshot(), "Sednaya prison", vector, 5)
    assert proxy.round_trips == 3
