"""The DBaaS's two busy paths, ``POST db/read`` and ``db/write``, answered straight from ASGI:
every request of the services becomes one of them, and FastAPI's per-request machinery was a third
of the orchestrator's CPU. Every other request, and the OpenAPI description of these two, stays
with FastAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[bytes], Awaitable[tuple[int, Any]]]
MAX_BODY_BYTES = 8 * 1024 * 1024


async def _bounded_body(scope: Scope, receive: Receive) -> bytes | None:
    """The request's body, or None as soon as it is known to be over ``MAX_BODY_BYTES`` (from its
    Content-Length, or while it streams in): it is never read in full first."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return None
    chunks, size, more = [], 0, True
    while more:
        event = await receive()
        if event["type"] == "http.disconnect":
            return b""
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        more = event.get("more_body", False)
    return b"".join(chunks)


class HotPaths:
    """``POST db/read`` and ``db/write``, which every request of the services becomes, answered
    straight from ASGI: FastAPI's per-request machinery was a third of the orchestrator's CPU.
    Every other request, and the OpenAPI description of these two, stays with FastAPI."""

    def __init__(self, app: ASGIApp, routes: dict[str, Handler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = await _bounded_body(scope, receive)
        if raw is None:
            status, body = 413, {"error": "The body is larger than 8 MiB; split the request."}
        else:
            status, body = await handler(raw)
        payload = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
