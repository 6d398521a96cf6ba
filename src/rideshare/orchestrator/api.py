"""The orchestrator's HTTP API (SPEC §5): the DBaaS front. It never touches a database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.errors import BadRequest
from rideshare.http.errors import error_response, install_error_handlers, json_response
from rideshare.logs import configure as configure_logs
from rideshare.messaging import uses_quorum_queues
from rideshare.orchestrator.cluster import Cluster
from rideshare.orchestrator.rpc import Rpc, RpcTimeout, RpcUnavailable, StaleEpoch
from rideshare.orchestrator.runtime.base import WorkerRuntime
from rideshare.protocol import Clear, WriteRequest, parse_read, parse_write

log = logging.getLogger(__name__)


def make_runtime(settings: Settings) -> WorkerRuntime:
    if settings.runtime == "process":
        from rideshare.orchestrator.runtime.process import ProcessRuntime

        return ProcessRuntime(settings)
    if settings.runtime == "docker":
        from rideshare.orchestrator.runtime.docker import DockerRuntime

        return DockerRuntime(settings)
    raise SystemExit(f"RIDESHARE_RUNTIME={settings.runtime!r} is not known; use 'process' or "
                     "'docker'.")


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}).") from exc


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logs("orchestrator")
    rpc = Rpc(settings.amqp_url_list, settings.queue_prefix, settings.write_timeout_s,
              settings.read_timeout_s,
              uses_quorum_queues(settings.quorum_queues, settings.amqp_url_list),
              settings.dead_letter_max_length)
    dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
    cluster = Cluster(settings, dcs, make_runtime(settings), rpc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rpc.start()
        await cluster.start()
        learning = asyncio.create_task(rpc.learn_position())
        yield
        learning.cancel()
        await cluster.stop()
        await rpc.stop()

    app = FastAPI(title="RideShare orchestrator", lifespan=lifespan,
                  description="The DBaaS: db/write goes to the master, db/read to the slaves.")
    app.state.cluster = cluster
    install_error_handlers(app)  # 404, 405 and the rest as {"error": ...}, like every part

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> Response:
        return error_response(str(exc), 400)

    async def write(request: WriteRequest) -> tuple[int, Any]:
        try:
            answer = await rpc.write(request)
        except RpcTimeout:
            return 503, {"error": f"No master committed the write within "
                                  f"{settings.write_timeout_s} s. It may still be applied: retry"
                                  " with the same 'id' (send one with every write you may"
                                  " retry)."}
        except StaleEpoch:
            return 503, {"error": "The master that answered has been deposed; retry with the"
                                  " same 'id'."}
        except RpcUnavailable as exc:
            return 503, {"error": f"The message broker is unreachable ({exc}); retry with the"
                                  " same 'id'."}
        if not answer.get("ok"):
            return answer.get("status", 503), {"error": answer.get("error", "The write failed.")}
        return 200, {"position": answer["position"], "results": answer["results"],
                     "epoch": answer.get("epoch", 0), "master": answer.get("master")}

    async def serve_write(raw: bytes) -> tuple[int, Any]:
        try:
            return await write(parse_write(_decode(raw)))
        except BadRequest as exc:
            return 400, {"error": str(exc)}

    async def serve_read(raw: bytes) -> tuple[int, Any]:
        cluster.window.record_read(time.time())
        try:
            read = parse_read(_decode(raw))
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        try:
            answer = await rpc.read(read)
        except RpcTimeout:
            return 503, {"error": f"No slave answered within {settings.read_timeout_s} s; retry."}
        except RpcUnavailable as exc:
            return 503, {"error": f"The message broker is unreachable ({exc}); retry."}
        if not answer.get("ok"):
            return answer.get("status", 503), {"error": answer.get("error", "The read failed.")}
        results = answer["results"]
        return 200, results[0] if read.single else {"results": results}

    @app.post("/api/v1/db/write")
    async def db_write(request: Request) -> Response:
        """Apply a write's operations atomically on the master; answers once committed and
        replicated."""
        status, body = await serve_write(await request.body())
        return json_response(body, status)

    @app.post("/api/v1/db/read")
    async def db_read(request: Request) -> Response:
        """Answer a read on a slave that has applied every write acknowledged before it."""
        status, body = await serve_read(await request.body())
        return json_response(body, status)

    @app.post("/api/v1/db/clear")
    async def db_clear() -> Response:
        """Remove all users and rides on every worker; ids are not reused afterwards."""
        status, body = await write(WriteRequest((Clear(),)))
        return json_response({} if status == 200 else body, status)

    @app.get("/api/v1/worker/list")
    async def worker_list() -> Response:
        """PIDs of all workers, master included, ascending."""
        return json_response(cluster.worker_pids())

    @app.post("/api/v1/crash/master")
    async def crash_master() -> Response:
        """SIGKILL the master; a slave is elected in its place."""
        pid = cluster.crash_master()
        if pid is None:
            return error_response("There is no live master to crash right now; try again later.",
                                  409)
        return json_response([pid])

    @app.post("/api/v1/crash/slave")
    async def crash_slave() -> Response:
        """SIGKILL the slave with the highest PID; a new one replaces it."""
        pid = cluster.crash_slave()
        if pid is None:
            return error_response("There is no slave to crash.", 409)
        return json_response([pid])

    @app.get("/api/v1/cluster")
    async def cluster_state() -> Response:
        return json_response(cluster.describe())

    @app.put("/api/v1/cluster/slaves")
    async def set_slaves(request: Request) -> Response:
        """(beyond) Set the desired number of slaves now; the next scaling window may change
        it again. Body: ``{"desired": n}`` with 1 <= n <= max_slaves."""
        body = _decode(await request.body())
        desired = body.get("desired") if isinstance(body, dict) else None
        if isinstance(desired, bool) or not isinstance(desired, int) or not (
                1 <= desired <= settings.max_slaves):
            return error_response(
                f"Send {{\"desired\": n}} with n from 1 to {settings.max_slaves}.", 400)
        cluster.set_desired_slaves(desired)
        return json_response(cluster.describe()["slaves"])

    @app.get("/health")
    async def health() -> Response:
        """Ready once a master and at least one slave serve."""
        state = cluster.describe()
        states = {w["role"]: w["state"] for w in state["workers"]}
        ready = states.get("master") == "master" and any(
            w["state"] == "slave" for w in state["workers"])
        return json_response({"status": "ok" if ready else "starting", "epoch": state["epoch"]},
                             200 if ready else 503)

    app.add_middleware(HotPaths, routes={"/api/v1/db/read": serve_read,
                                         "/api/v1/db/write": serve_write})
    return app


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
