"""The orchestrator's HTTP API (SPEC §5): the DBaaS front. It never touches a database."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.orchestrator.cluster import Cluster
from rideshare.orchestrator.rpc import Rpc, RpcTimeout, RpcUnavailable, StaleEpoch
from rideshare.orchestrator.runtime.base import WorkerRuntime
from rideshare.protocol import BadRequest, Clear, WriteRequest, parse_read, parse_write

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error(status: int, sentence: str) -> Response:
    return json_response({"error": sentence}, status)


def make_runtime(settings: Settings) -> WorkerRuntime:
    if settings.runtime == "process":
        from rideshare.orchestrator.runtime.process import ProcessRuntime

        return ProcessRuntime(settings.run_dir / "logs")
    if settings.runtime == "docker":
        from rideshare.orchestrator.runtime.docker import DockerRuntime

        return DockerRuntime(settings)
    raise SystemExit(f"RIDESHARE_RUNTIME={settings.runtime!r} is not known; use 'process' or "
                     "'docker'.")


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}).") from exc


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    rpc = Rpc(settings.amqp_url, settings.queue_prefix)
    dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
    cluster = Cluster(settings, dcs, make_runtime(settings), rpc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rpc.start()
        await cluster.start()
        yield
        await cluster.stop()
        await rpc.stop()

    app = FastAPI(title="RideShare orchestrator", lifespan=lifespan,
                  description="The DBaaS: db/write goes to the master, db/read to the slaves.")
    app.state.cluster = cluster

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> Response:
        return error(400, str(exc))

    async def write(request: WriteRequest) -> Response:
        try:
            answer = await rpc.write(request, settings.write_timeout_s)
        except RpcTimeout:
            return error(503, f"No master committed the write within {settings.write_timeout_s}"
                              " s. It may still be applied: retry with the same 'id'.")
        except StaleEpoch:
            return error(503, "The master that answered has been deposed; retry with the same"
                              " 'id'.")
        except RpcUnavailable as exc:
            return error(503, f"The message broker is unreachable ({exc}); retry with the same"
                              " 'id'.")
        if not answer.get("ok"):
            return error(answer.get("status", 503), answer.get("error", "The write failed."))
        return json_response({"position": answer["position"], "results": answer["results"],
                              "epoch": answer.get("epoch", 0)})

    @app.post("/api/v1/db/write")
    async def db_write(request: Request) -> Response:
        """Apply a write's operations atomically on the master; answers once committed and
        replicated."""
        return await write(parse_write(await _body(request)))

    @app.post("/api/v1/db/read")
    async def db_read(request: Request) -> Response:
        """Answer a read on a slave that has applied every write acknowledged before it."""
        cluster.window.record_read(time.time())
        read = parse_read(await _body(request))
        try:
            answer = await rpc.read(read, settings.read_timeout_s)
        except RpcTimeout:
            return error(503, f"No slave answered within {settings.read_timeout_s} s; retry.")
        except RpcUnavailable as exc:
            return error(503, f"The message broker is unreachable ({exc}); retry.")
        if not answer.get("ok"):
            return error(answer.get("status", 503), answer.get("error", "The read failed."))
        results = answer["results"]
        return json_response(results[0] if read.single else {"results": results})

    @app.post("/api/v1/db/clear")
    async def db_clear() -> Response:
        """Remove all users and rides on every worker; ids are not reused afterwards."""
        response = await write(WriteRequest((Clear(),)))
        return json_response({}) if response.status_code == 200 else response

    @app.get("/api/v1/worker/list")
    async def worker_list() -> Response:
        """PIDs of all workers, master included, ascending."""
        return json_response(cluster.worker_pids())

    @app.post("/api/v1/crash/master")
    async def crash_master() -> Response:
        """SIGKILL the master; a slave is elected in its place."""
        pid = cluster.crash_master()
        if pid is None:
            return error(409, "There is no live master to crash right now; try again later.")
        return json_response([pid])

    @app.post("/api/v1/crash/slave")
    async def crash_slave() -> Response:
        """SIGKILL the slave with the highest PID; a new one replaces it."""
        pid = cluster.crash_slave()
        if pid is None:
            return error(409, "There is no slave to crash.")
        return json_response([pid])

    @app.get("/api/v1/cluster")
    async def cluster_state() -> Response:
        return json_response(cluster.describe())

    @app.put("/api/v1/cluster/slaves")
    async def set_slaves(request: Request) -> Response:
        """(beyond) Set the desired number of slaves now; the next scaling window may change
        it again. Body: ``{"desired": n}`` with 1 <= n <= max_slaves."""
        body = await _body(request)
        desired = body.get("desired") if isinstance(body, dict) else None
        if isinstance(desired, bool) or not isinstance(desired, int) or not (
                1 <= desired <= settings.max_slaves):
            return error(400, f"Send {{\"desired\": n}} with n from 1 to {settings.max_slaves}.")
        cluster.desired_slaves = desired
        cluster.wake()
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

    return app
