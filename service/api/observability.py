"""What operators see: Prometheus metrics, one JSON log line per request, and a request id that ties them together.

The metrics live in a registry owned by the app (no process-global state), exposed at ``/metrics``. The request id
is taken from an incoming ``X-Request-ID`` header (when it looks like an id) or made up, echoed in the response and
stamped on every log line written while the request is handled. API keys are never logged: only the key's name.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

__all__ = ["Metrics", "RequestIdFilter", "configure_json_logging", "request_id_var"]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("service.access")


def _route_label(request: Request) -> str:
    """The matched route's template with the prefix it was included under ("/v1/documents/{doc_id}"): a label
    with bounded cardinality, unlike the raw path."""
    route = request.scope.get("route")
    if route is None:
        return "unmatched"
    template = str(getattr(route, "path_format", None) or getattr(route, "path", ""))
    concrete = template
    for name, value in request.scope.get("path_params", {}).items():
        concrete = concrete.replace("{" + name + "}", str(value))
    path = request.url.path
    return (path[: len(path) - len(concrete)] if concrete and path.endswith(concrete) else "") + template


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_json_logging(level: int = logging.INFO) -> None:
    """Every log line as one JSON object: time, level, logger, message, request_id and any extra fields."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}{request_id}", style="{",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("index", "service"):
        logging.getLogger(name).setLevel(level)


class Metrics:
    """Request counts and latencies by route, answers and abstentions, and the archive's size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("newsroomqa_http_requests", "HTTP requests handled.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("newsroomqa_http_request_seconds", "Time to handle an HTTP request.",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.answers = Counter("newsroomqa_answers", "Questions answered (ask, chat), by outcome.",
                               ["outcome"], registry=self.registry)
        self.documents = Gauge("newsroomqa_documents", "Articles in the live index.", registry=self.registry)
        self.chunks = Gauge("newsroomqa_chunks", "Chunks (vectors) in the live index.", registry=self.registry)
        # Data directory only (PostgreSQL has no segments): what a search reads, and what merging them has cost.
        self.segments = Gauge("newsroomqa_segments", "Segments a search reads.", registry=self.registry)
        self.deleted = Gauge("newsroomqa_deleted_documents", "Deleted articles not yet merged away.",
                             registry=self.registry)
        self.merges = Gauge("newsroomqa_segment_merges", "Segment merges this process has run.",
                            registry=self.registry)
        self.merge_seconds = Gauge("newsroomqa_segment_merge_seconds", "Seconds this process has spent merging "
                                   "segments.", registry=self.registry)

    def count_answer(self, abstained: bool) -> None:
        self.answers.labels(outcome="abstained" if abstained else "answered").inc()

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Request id in, metrics and one access-log line out."""
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            seconds = time.perf_counter() - started
            route = _route_label(request)
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(seconds)
            principal = getattr(request.state, "principal", None)
            access_log.info("request", extra={"method": request.method, "route": route, "status": status,
                                              "ms": round(seconds * 1000, 1),
                                              "key": principal.name if principal is not None else None})
            request_id_var.reset(token)
