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
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator, Epoch
from rideshare.messaging import connect
from rideshare.worker.pgserver import PostgresServer, data_root, remove_copy
from rideshare.worker.roles import Context, MasterRole, SlaveRole, fatal, fatal_on_failure
from rideshare.worker.store import Store

log = logging.getLogger("rideshare.worker")


class Worker:
    def __init__(self, ctx: Context, dcs: Coordinator) -> None:
        self.ctx = ctx
        self.dcs = dcs
        self.role: MasterRole | SlaveRole | None = None
        self.role_name = "starting"
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._epochs: asyncio.Queue[Epoch] = asyncio.Queue()
        self._published: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "role": self.role_name, "log_position": self.ctx.position,
                "epoch": self.ctx.epoch, "started_at": self.started_at,
                "ready": self.role_name != "starting",
                "reads_served": getattr(self.role, "reads_served", 0)}

    async def publish_state(self) -> None:
        info = self.info()
        if info != self._published:
            await self.dcs.update_worker(self.ctx.worker_id, info)
            self._published = info

    async def run(self) -> None:
        await self.dcs.register_worker(self.ctx.worker_id, self.info())
        self.dcs.on_session_lost(lambda: fatal("ZooKeeper session expired"))
        epoch = await self.dcs.epoch()
        self.dcs.watch_epoch(self._epochs.put_nowait)
        if epoch.master == self.ctx.worker_id:
            await self._become_master(epoch)
        else:
            self.role = SlaveRole(self.ctx)
            await self.role.start()
            self.role_name = "slave"
        await self.publish_state()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        watchers = [asyncio.create_task(self._follow_epochs(), name="follow-epochs"),
                    asyncio.create_task(self._heartbeat(), name="heartbeat")]
        for task in watchers:
            task.add_done_callback(fatal_on_failure)
        await self._stop.wait()
        for task in watchers:
            task.cancel()
        await self.shutdown()

    async def _become_master(self, epoch: Epoch) -> None:
        self.ctx.epoch = epoch.number
        await self.ctx.store.set_log_state(self.ctx.position, epoch.number)
        self.role = MasterRole(self.ctx)
        await self.role.start()
        self.role_name = "master"

    async def _follow_epochs(self) -> None:
        while True:
            epoch = await self._epochs.get()
            mine = epoch.master == self.ctx.worker_id
            if mine and isinstance(self.role, SlaveRole):
                if self.role.suspect:
                    fatal("elected, but our copy may miss entries since a reconnect")
                log.info("elected master of epoch %s", epoch.number)
                slave = self.role
                await slave.stop_reads()
                await slave.drain()
                await slave.stop()
                self.ctx.position = slave.applied
                await self._become_master(epoch)
                await self.publish_state()
            elif not mine and isinstance(self.role, MasterRole) and epoch.number > self.ctx.epoch:
                fatal(f"deposed: epoch {epoch.number} names {epoch.master}")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self.publish_state()

    async def shutdown(self) -> None:
        """A graceful stop (scale-down or ``rideshare down``): no read in flight is dropped."""
        log.info("stopping gracefully")
        if self.role is not None:
            await self.role.stop()
        with contextlib.suppress(Exception):
            await self.dcs.unregister_worker(self.ctx.worker_id)
        with contextlib.suppress(Exception):
            await self.dcs.stop()
        with contextlib.suppress(Exception):
            await self.ctx.connection.close()
        await self.ctx.store.close()


async def run_worker(settings: Settings, worker_id: str, data_dir: Path,
                     adopt_from: Path | None) -> None:
    server = PostgresServer(settings, data_dir)
    await server.prepare(adopt_from)
    await server.start()
    watch = asyncio.create_task(server.wait(), name="postgres-server")
    # A copy lives and dies with its worker, both ways: without its server, we must go.
    watch.add_done_callback(lambda t: None if t.cancelled() else fatal(
        f"our PostgreSQL server exited ({t.result()})"))
    try:
        store = await Store.open(server.dsn)
        state = await store.log_state()
        connection = await connect(settings.amqp_url, f"{settings.queue_prefix}worker-{worker_id}")
        dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
        await dcs.start()
        ctx = Context(settings, worker_id, store, connection, state.position, state.epoch)
        await Worker(ctx, dcs).run()
    finally:
        watch.cancel()
        await server.stop()


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
    asyncio.run(run_worker(settings, args.id, data_dir, adopt_from))


if __name__ == "__main__":
    main()
