"""The orchestrator's HTTP API: the DBaaS front (docs/dbaas.md). It never touches a database.

Endpoints are module-level functions on ``router``; the running orchestrator's state is an
``Orchestrator`` (``dbaas.py``) kept in ``app.state`` by the lifespan. ``db/read`` and
``db/write`` are answered by ``HotPaths`` before FastAPI sees them; their routes here serve
``/docs`` (and a request that reaches FastAPI all the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.errors import BadRequest, Conflict
from rideshare.http.errors import install_error_handlers, json_response
from rideshare.http.openapi import documented
from rideshare.logs import configure as configure_logs
from rideshare.messaging import uses_quorum_queues
from rideshare.orchestrator.cluster import Cluster
from rideshare.orchestrator.dbaas import Orchestrator, decode
from rideshare.orchestrator.hotpaths import HotPaths
from rideshare.orchestrator.rpc import Rpc
from rideshare.orchestrator.runtime.base import WorkerRuntime
from rideshare.protocol import Clear, WriteRequest

NO_MASTER_OR_SLAVE = {503: "No master (or slave) answered in time, or the broker is away: retry "
                           "(a write with the same 'id')."}


class WriteBody(BaseModel):
    """Up to 100 operations applied atomically on the master (docs/dbaas.md)."""

    id: str | None = Field(None, description="Your id for this write: a retry with the same id "
                                             "is applied once.")
    ops: list[dict[str, Any]] = Field(description="insert, update, delete or clear operations.")


class ReadBody(BaseModel):
    """One query (or ``{"queries": [...]}`` for several from one snapshot; docs/dbaas.md)."""

    table: str
    columns: list[str] | None = None
    where: dict[str, Any] | None = None
    order_by: list[dict[str, Any]] | None = None
    limit: int | None = None
    count: bool | None = None


class Desired(BaseModel):
    desired: int = Field(ge=1, description="Slaves wanted now, 1 to RIDESHARE_MAX_SLAVES.")


def make_runtime(settings: Settings) -> WorkerRuntime:
    if settings.runtime == "process":
        from rideshare.orchestrator.runtime.process import ProcessRuntime

        return ProcessRuntime(settings)
    if settings.runtime == "docker":
        from rideshare.orchestrator.runtime.docker import DockerRuntime

        return DockerRuntime(settings)
    raise SystemExit(f"RIDESHARE_RUNTIME={settings.runtime!r} is not known; use 'process' or "
                     "'docker'.")


def _orchestrator(request: Request) -> Orchestrator:
    orchestrator: Orchestrator = request.app.state.orchestrator
    return orchestrator


router = APIRouter()


@router.post("/api/v1/db/write", **documented(
    200, "Committed on the master and replicated: its log position, epoch and results.",
    {400: "Not a valid write, or refused for its content; nothing applied.",
     409: "A constraint was violated; nothing applied.", 413: "The body is over 8 MiB.",
     **NO_MASTER_OR_SLAVE}, body=WriteBody))
async def db_write(request: Request) -> Response:
    """Apply a write's operations atomically on the master; answers once committed and
    replicated."""
    status, body = await _orchestrator(request).serve_write(await request.body())
    return json_response(body, status)


@router.post("/api/v1/db/read", **documented(
    200, "The rows (or the count), from a slave holding every write acknowledged before.",
    {400: "Not a valid read.", 413: "The body is over 8 MiB.", **NO_MASTER_OR_SLAVE},
    body=ReadBody))
async def db_read(request: Request) -> Response:
    """Answer a read on a slave that has applied every write acknowledged before it."""
    status, body = await _orchestrator(request).serve_read(await request.body())
    return json_response(body, status)


@router.post("/api/v1/db/clear", **documented(
    200, "Every user and ride removed on every worker: ``{}``.", NO_MASTER_OR_SLAVE))
async def db_clear(request: Request) -> Response:
    """Remove all users and rides on every worker; ids are not reused afterwards."""
    status, body = await _orchestrator(request).write(WriteRequest((Clear(),)))
    return json_response({} if status == 200 else body, status)


@router.get("/api/v1/worker/list", **documented(
    200, "The PIDs of every worker, master included, ascending.", {}, answer=list[int]))
async def worker_list(request: Request) -> Response:
    return json_response(_orchestrator(request).cluster.worker_pids())


@router.post("/api/v1/crash/master", **documented(
    200, "``[pid]`` of the master, killed; a slave is elected in its place.",
    {409: "There is no live master right now."}, answer=list[int]))
async def crash_master(request: Request) -> Response:
    pid = await _orchestrator(request).cluster.crash_master()
    if pid is None:
        raise Conflict("There is no live master to crash right now; try again later.")
    return json_response([pid])


@router.post("/api/v1/crash/slave", **documented(
    200, "``[pid]`` of the slave with the highest PID, killed; a new one replaces it.",
    {409: "There is no slave."}, answer=list[int]))
async def crash_slave(request: Request) -> Response:
    pid = await _orchestrator(request).cluster.crash_slave()
    if pid is None:
        raise Conflict("There is no slave to crash.")
    return json_response([pid])


@router.get("/api/v1/cluster", **documented(200, "Workers, epoch and scaling state.", {}))
async def cluster_state(request: Request) -> Response:
    return json_response(_orchestrator(request).cluster.describe())


@router.put("/api/v1/cluster/slaves", **documented(
    200, "The scaling state once set.", {400: "Not a number of slaves from 1 to the ceiling."},
    body=Desired))
async def set_slaves(request: Request) -> Response:
    """(beyond the original) Set the desired number of slaves now; the next scaling window may
    change it again."""
    orchestrator = _orchestrator(request)
    ceiling = orchestrator.settings.max_slaves
    body = decode(await request.body())
    desired = body.get("desired") if isinstance(body, dict) else None
    if isinstance(desired, bool) or not isinstance(desired, int) or not 1 <= desired <= ceiling:
        raise BadRequest(f"Send {{\"desired\": n}} with n from 1 to {ceiling}.")
    orchestrator.cluster.set_desired_slaves(desired)
    return json_response(orchestrator.cluster.describe()["slaves"])


@router.get("/health", include_in_schema=False)
async def health(request: Request) -> Response:
    """Ready once a master and at least one slave serve."""
    state = _orchestrator(request).cluster.describe()
    roles = {w["role"]: w["state"] for w in state["workers"]}
    ready = roles.get("master") == "master" and any(
        w["state"] == "slave" for w in state["workers"])
    return json_response({"status": "ok" if ready else "starting", "epoch": state["epoch"]},
                         200 if ready else 503)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The orchestrator's ASGI app (``uvicorn --factory rideshare.orchestrator.api:create_app``)."""
    settings = settings or get_settings()
    configure_logs("orchestrator")
    quorum = uses_quorum_queues(settings.quorum_queues, settings.amqp_url_list)
    rpc = Rpc(settings.amqp_url_list, settings.queue_prefix, settings.write_timeout_s,
              settings.read_timeout_s, quorum, settings.dead_letter_max_length)
    dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
    orchestrator = Orchestrator(settings, rpc, Cluster(settings, dcs, make_runtime(settings), rpc))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rpc.start()
        await orchestrator.cluster.start()
        learning = asyncio.create_task(rpc.learn_position())
        yield
        learning.cancel()
        await orchestrator.cluster.stop()
        await rpc.stop()

    app = FastAPI(title="RideShare orchestrator", lifespan=lifespan,
                  description="The DBaaS: db/write goes to the master, db/read to the slaves.")
    app.state.orchestrator = orchestrator
    install_error_handlers(app)  # 404, 405 and every error as {"error": ...}, like every part
    app.include_router(router)
    app.add_middleware(HotPaths, routes={"/api/v1/db/read": orchestrator.serve_read,
                                         "/api/v1/db/write": orchestrator.serve_write})
    return app
