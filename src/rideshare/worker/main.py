"""One worker program for both roles: the role is decided, and can change, while it runs.

    python -m rideshare.worker --id ID [--adopt-copy COPY] [--data-dir PATH]
        run a worker, with a PostgreSQL server of its own on PATH (default: <data root>/ID); with
        --adopt-copy, the copy left on disk by worker COPY becomes its data directory first
    python -m rideshare.worker --probe-copy PATH
        print the (epoch, log position) a copy left on disk holds, as JSON
    python -m rideshare.worker --drop-copy PATH
        remove a copy (its stray server first)

The orchestrator's runtime runs the last two, so that the orchestrator never touches a database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import orjson

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.errors import Fatal
from rideshare.messaging import connect, uses_quorum_queues
from rideshare.worker.context import Context, LogState
from rideshare.worker.pgserver import PostgresServer, data_root, remove_copy
from rideshare.worker.store import Store
from rideshare.worker.worker import Worker

log = logging.getLogger("rideshare.worker")


async def run_worker(settings: Settings, worker_id: str, data_dir: Path,
                     adopt_from: Path | None) -> None:
    """Run until a graceful stop, which also stops our server; a ``Fatal`` leaves at once (the
    server dies with us)."""
    server = PostgresServer(settings, data_dir)
    await server.prepare(adopt_from)
    await server.start()
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def server_exited(task: asyncio.Task[int]) -> None:
        if not task.cancelled() and not failed.done():
            failed.set_exception(Fatal(f"our PostgreSQL server exited ({task.result()})"))

    # A copy lives and dies with its worker, both ways: without its server, we must go.
    watch = asyncio.create_task(server.wait(), name="postgres-server")
    watch.add_done_callback(server_exited)
    try:
        store = await Store.open(server.dsn)
        state = await store.log_state()
        connection = await connect(settings.amqp_url_list,
                                   f"{settings.queue_prefix}worker-{worker_id}",
                                   settings.amqp_heartbeat_s)
        dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
        await dcs.start()
    except BaseException:  # a failed start stops the server it started
        watch.cancel()
        await server.stop()
        raise
    ctx = Context(settings, worker_id, store, connection, LogState(state.position, state.epoch),
                  fail=lambda _: None,
                  quorum=uses_quorum_queues(settings.quorum_queues, settings.amqp_url_list),
                  dcs=dcs)
    worker = Worker(ctx, dcs)
    running = asyncio.create_task(worker.run(), name="worker")
    await asyncio.wait([running, failed], return_when=asyncio.FIRST_COMPLETED)
    if failed.done():
        worker.fail(failed.exception())  # type: ignore[arg-type]
        failed.result()
    running.result()  # a Fatal raises here, before any cleanup
    watch.cancel()
    await server.stop()


async def serve(settings: Settings, worker_id: str, data_dir: Path,
                adopt_from: Path | None) -> None:
    """The main loop: the only place a ``Fatal`` becomes an exit. It exits at once, from inside
    the loop: no cleanup that could still act, and none that could wait (a thread blocked on
    ZooKeeper would hold up the loop's own shutdown forever). Our server dies with us (its
    parent-death signal); the orchestrator replaces us."""
    try:
        await run_worker(settings, worker_id, data_dir, adopt_from)
    except Fatal as exc:
        log.error("stopping now: %s", exc)
        logging.shutdown()
        os._exit(3)


async def probe_copy(settings: Settings, data_dir: Path) -> dict[str, int]:
    """Start a server on a copy left on disk just long enough to read its log state."""
    server = PostgresServer(settings, data_dir)
    await server.start()
    try:
        store = await Store.open(server.dsn)
        state = await store.log_state()
        await store.close()
    finally:
        await server.stop()
    return {"epoch": state.epoch, "position": state.position}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rideshare-worker")
    parser.add_argument("--id", help="this worker's id")
    parser.add_argument("--data-dir", type=Path, help="its data directory")
    parser.add_argument("--adopt-copy", metavar="COPY",
                        help="take over the copy that worker COPY left on disk")
    parser.add_argument("--probe-copy", metavar="PATH", type=Path,
                        help="print the epoch and log position of a copy on disk")
    parser.add_argument("--drop-copy", metavar="PATH", type=Path, help="remove a copy")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker {args.id or '-'} %(levelname)s %(message)s")
    if args.drop_copy:
        remove_copy(args.drop_copy.resolve())
        return
    if args.probe_copy:
        print(orjson.dumps(asyncio.run(probe_copy(settings, args.probe_copy.resolve()))).decode())
        return
    if not args.id:
        parser.error("--id is required")
    root = data_root(settings)
    data_dir = (args.data_dir or root / args.id).resolve()
    adopt_from = root / args.adopt_copy if args.adopt_copy else None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(settings, args.id, data_dir, adopt_from))


if __name__ == "__main__":
    main()
