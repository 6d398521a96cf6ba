"""The app factory every RideShare HTTP service is built with.

It wires what the services share so that each service module holds only its own routes: the
JSON error model, ``GET /health``, ``GET /metrics``, the ``_count`` endpoints and their counting
middleware, ``POST /api/v1/db/clear``, and a lifespan that opens ONE ``DBClient`` and ONE
keep-alive ``aiohttp.ClientSession`` per process (connection reuse is what keeps the inter-service
hop cheap) and closes them, after a last flush of the request count, on shutdown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rideshare.config import Settings, get_settings
from rideshare.dbclient import DBClient
from rideshare.errors import TooLarge
from rideshare.http.counter import RequestCounter
from rideshare.http.errors import install_error_handlers, json_response, parse_json_body
from rideshare.http.routes import every_route

MAX_BODY_BYTES = 1024 * 1024  # as the gateway: more is a 413, also on a service port

FLUSH_INTERVAL_S = 0.2  # how often each process adds its counted requests to _count
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
REQUESTS = Counter(
    "rideshare_http_requests_total", "HTTP requests answered, by route template and status.",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "rideshare_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["service", "route"],
)


def matched_route(app: FastAPI, scope: Scope) -> Route | None:
    """The route whose path matches the request (whatever its method), or None: unknown path."""
    partial: Route | None = None
    for route in every_route(app):
        if not isinstance(route, Route):
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


class CountingMiddleware:
    """Counts the requests that ``_count`` reports, and records Prometheus metrics for all.

    A request counts when its path is one of the service's own API routes (``counted_prefix``),
    whatever the method or status: 400s and 405s count, unknown paths (404) do not. It is
    counted on arrival, so a request that later fails is counted too.
    """

    def __init__(self, app: ASGIApp, service: str, counted_prefix: str) -> None:
        self.app = app
        self.service = service
        self.counted_prefix = counted_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fastapi_app: FastAPI = scope["app"]
        route = matched_route(fastapi_app, scope)
        template = route.path if route is not None else "unmatched"
        if route is not None and template.startswith(self.counted_prefix):
            counter: RequestCounter | None = getattr(fastapi_app.state, "counter", None)
            if counter is not None:
                counter.add()
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUESTS.labels(self.service, method, template, str(status)).inc()
            LATENCY.labels(self.service, template).observe(time.perf_counter() - started)


async def read_json(request: Request) -> Any:
    """The request's JSON body, read in full (at most ``MAX_BODY_BYTES``) and decoded with
    orjson; malformed JSON, an empty body or a body too large is a 4xx, never a 422 or 500."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge("The request body is larger than 1 MiB.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge("The request body is larger than 1 MiB.")
        chunks.append(chunk)
    return parse_json_body(b"".join(chunks))


def _shared_routes(app: FastAPI) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        """Readiness: the process is up and serving HTTP."""
        return json_response({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/_count")
    async def get_count(request: Request) -> Response:
        """How many requests this service has received (``[n]``), across restarts."""
        return json_response([await request.app.state.counter.value()])

    @app.delete("/api/v1/_count")
    async def reset_count(request: Request) -> Response:
        await request.app.state.counter.reset()
        return json_response({})

    @app.post("/api/v1/db/clear")
    async def clear(request: Request) -> Response:
        """Remove all users and rides (the DBaaS keeps the id counters and request counts)."""
        await request.app.state.db.clear()
        return json_response({})


def create_service_app(
    service: str,
    counted_prefix: str,
    router: APIRouter,
    settings: Settings | None = None,
    title: str | None = None,
) -> FastAPI:
    """A FastAPI app for ``service``: the shared parts wired, then ``router``'s endpoints."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = DBClient(
            settings.orchestrator_url,
            timeout_s=max(settings.write_timeout_s, settings.read_timeout_s) + 5.0,
        )
        http = aiohttp.ClientSession(
            # the users service may itself wait up to read_timeout_s for the DBaaS
            timeout=aiohttp.ClientTimeout(total=settings.read_timeout_s + 5.0, connect=2.0),
            # idle connections are dropped well before the gateway's keepalive_timeout (65 s)
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30.0),
        )
        counter = RequestCounter(
            db, service, interval_s=FLUSH_INTERVAL_S, timeout_s=settings.write_timeout_s + 5.0,
            settle_s=1.5 * FLUSH_INTERVAL_S if settings.service_processes > 1 else 0.0,
        )
        app.state.db, app.state.http, app.state.counter = db, http, counter
        counter.start()
        try:
            yield
        finally:
            await counter.stop()
            await http.close()
            await db.close()

    app = FastAPI(
        title=title or f"RideShare {service} service",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(CountingMiddleware, service=service, counted_prefix=counted_prefix)
    _shared_routes(app)
    app.include_router(router)
    return app
