"""Assembles the FastAPI app: the service object, error translation, body limits and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from index.errors import QAError
from service.api.errors import status_for
from service.api.routes import answers, chat, documents, web
from service.newsroom import Newsroom
from service.qa import QAService
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


def _mount_slack(app: FastAPI, settings: Settings) -> None:
    """``POST /slack/events``: Slack's events, commands and button clicks, for the bolt app built at start-up."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from starlette.concurrency import run_in_threadpool

    from service.slack_app import require_slack_settings

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
            from service.slack_app import build_slack_app

            app.state.slack = build_slack_app(app.state.newsroom)
        yield

    app = FastAPI(title="newsroom-qa", version="0.1.0", lifespan=lifespan,
                  description="Extractive question answering over a newsroom's archive: every answer is quoted "
                              "from a stored article and cited to the exact characters, or the service abstains.")
    if newsroom is not None:
        app.state.newsroom = newsroom
    max_body = (newsroom.qa.settings if newsroom is not None else settings or Settings()).max_request_bytes

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse(status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                                content={"detail": f"request body larger than {max_body} bytes"})
        return await call_next(request)

    app.add_exception_handler(QAError, _qa_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(answers.router, prefix=API_PREFIX)
    app.include_router(documents.router, prefix=API_PREFIX)
    app.include_router(chat.router, prefix=API_PREFIX)
    app.include_router(web.router)
    slack_settings = newsroom.qa.settings if newsroom is not None else settings or Settings()
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

    return app
