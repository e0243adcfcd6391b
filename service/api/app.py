"""Assembles the FastAPI app: the service object, error translation, body limits and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from index.errors import QAError
from service.answering.qa import QAService
from service.api.auth import KeyRing
from service.api.errors import status_for
from service.api.observability import Metrics
from service.api.ratelimit import RateLimiter
from service.api.routes import answers, chat, documents, web
from service.newsroom import Newsroom
from service.settings import Settings

__all__ = ["create_app"]

API_PREFIX = "/v1"


class Health(BaseModel):
    status: str
    documents: int
    chunks: int
    model: str


def _qa_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QAError)
    return JSONResponse(status_code=status_for(exc), content={"detail": str(exc)})


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors as one readable sentence (``detail``) plus the structured list (``errors``)."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                        content={"detail": "; ".join(problems), "errors": errors})


# Every error body is {"detail": "<one readable sentence>"}; validation errors add the structured "errors" list.
_ERROR_SCHEMA = {"type": "object", "title": "Error", "required": ["detail"], "properties": {
    "detail": {"type": "string", "description": "What is wrong, in one sentence."},
    "errors": {"type": "array", "items": {"type": "object"}, "description": "Pydantic's errors (422 only)."}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with FastAPI's default 422 body replaced by the one this service sends."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = _ERROR_SCHEMA
        app.openapi_schema = schema
    return app.openapi_schema


def _mount_slack(app: FastAPI, settings: Settings) -> None:
    """``POST /slack/events``: Slack's events, commands and button clicks, for the bolt app built at start-up."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from starlette.concurrency import run_in_threadpool

    from service.slack.app import require_slack_settings

    require_slack_settings(settings)  # a half-configured bot fails at start-up, naming what is missing

    @app.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        bolt = request.app.state.slack
        bolt_request = to_bolt_request(request, await request.body())
        return to_starlette_response(await run_in_threadpool(bolt.dispatch, bolt_request))


def create_app(settings: Settings | None = None, service: Newsroom | QAService | None = None) -> FastAPI:
    """Build the app around ready services (a ``QAService`` gets chat and feedback in its data dir), or build them
    from ``settings`` at start-up."""
    newsroom = Newsroom.around(service) if isinstance(service, QAService) else service

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if newsroom is None:
            app.state.newsroom = Newsroom.from_settings(settings or Settings())
        if any(getattr(r, "path", None) == "/slack/events" for r in app.router.routes):
            from service.slack.app import build_slack_app

            app.state.slack = build_slack_app(app.state.newsroom)
        yield
        if newsroom is None:  # built here: closed here (a newsroom handed in belongs to its caller)
            app.state.newsroom.close()

    app = FastAPI(title="newsroom-qa", version="0.1.0", lifespan=lifespan,
                  description="Extractive question answering over a newsroom's archive: every answer is quoted "
                              "from a stored article and cited to the exact characters, or the service abstains.")
    if newsroom is not None:
        app.state.newsroom = newsroom
    effective = newsroom.qa.settings if newsroom is not None else settings or Settings()
    max_body = effective.max_request_bytes
    admin_key = effective.api_key.get_secret_value() if effective.api_key is not None else None
    app.state.keyring = KeyRing.load(admin_key, effective.api_keys_file)
    app.state.limiter = RateLimiter(effective.rate_limit, effective.rate_limit_anonymous)

    metrics = Metrics()
    app.state.metrics = metrics

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse(status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                                content={"detail": f"request body larger than {max_body} bytes"})
        return await call_next(request)

    app.middleware("http")(metrics.middleware)  # added last: runs first, so it sees every response
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_exception_handler(QAError, _qa_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(answers.router, prefix=API_PREFIX)
    app.include_router(documents.router, prefix=API_PREFIX)
    app.include_router(chat.router, prefix=API_PREFIX)
    app.include_router(web.router)
    slack_settings = effective
    # HTTP events when a signing secret is set; a bot token alone (no Socket Mode token either) is a half-done setup.
    if slack_settings.slack_signing_secret is not None or (
            slack_settings.slack_bot_token is not None and slack_settings.slack_app_token is None):
        _mount_slack(app, slack_settings)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz(request: Request) -> Health:
        """Alive, with the size of the loaded archive."""
        qa: QAService = request.app.state.newsroom.qa
        manifest = qa.store.snapshot().manifest
        return Health(status="ok", documents=manifest.n_documents, chunks=manifest.n_chunks,
                      model=manifest.model_id)

    @app.get("/readyz", response_model=Health, tags=["health"],
             responses={503: {"description": "Starting, or the data directory cannot be read."}})
    def readyz(request: Request) -> Response:
        """Ready to answer: the models are loaded and the live index opens."""
        newsroom: Newsroom | None = getattr(request.app.state, "newsroom", None)
        if newsroom is None:
            return JSONResponse(status_code=503, content={"detail": "starting: the models are still loading"})
        try:
            manifest = newsroom.qa.store.snapshot().manifest
        except QAError as exc:
            return JSONResponse(status_code=503, content={"detail": f"the index cannot be opened: {exc}"})
        return JSONResponse(Health(status="ready", documents=manifest.n_documents, chunks=manifest.n_chunks,
                                   model=manifest.model_id).model_dump())

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format: request counts and latencies by route, answers by outcome, index size."""
        newsroom: Newsroom | None = getattr(request.app.state, "newsroom", None)
        if newsroom is not None:
            manifest = newsroom.qa.store.snapshot().manifest
            metrics.documents.set(manifest.n_documents)
            metrics.chunks.set(manifest.n_chunks)
            stats = getattr(newsroom.qa.store, "stats", None)
            if stats is not None:
                figures = stats()
                metrics.segments.set(figures.segments)
                metrics.deleted.set(figures.deleted_documents)
                metrics.merges.set(figures.merges)
                metrics.merge_seconds.set(figures.merge_seconds)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
