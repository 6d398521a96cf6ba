"""One worker: a role (slave, then perhaps master) and the watchers that decide when it must stop.

A worker stops acting at once (``Fatal``, turned into an exit by ``main``) when:
- an election names another master while it is master (deposed), or names it while its copy may
  miss entries, or when, drained, it still holds less than the writes acknowledged before;
- its ZooKeeper session is lost, or ZooKeeper stays out of reach longer than a session lasts (a
  master takes no writes from the moment ZooKeeper is out of reach);
- the broker stays out of reach longer than ``broker_grace_s``;
- its database does not answer within ``db_deadline_s``, or its server exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

import psycopg

from rideshare.dcs import Coordinator, Epoch
from rideshare.errors import Fatal
from rideshare.worker.context import Context
from rideshare.worker.master import MasterRole
from rideshare.worker.slave import SlaveRole

log = logging.getLogger("rideshare.worker")
HEARTBEAT_S = 1.0
HEALTH_CHECK_S = 2.0
START_BOUND_FACTOR = 3  # a role must start within this many RIDESHARE_WORKER_START_TIMEOUT_S


def log_tasks() -> None:
    """SIGUSR1: where every task of the worker is waiting (for a worker that seems stuck)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=12)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.warning("task %s: %s", task.get_name(), where or "(not started)")


class Worker:
    def __init__(self, ctx: Context, dcs: Coordinator) -> None:
        self.ctx = ctx
        self.dcs = dcs
        self.role: MasterRole | SlaveRole | None = None
        self.role_name = "starting"
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._epochs: asyncio.Queue[Epoch] = asyncio.Queue()
        self._published: dict[str, Any] = {}
        self._broker_timer: asyncio.TimerHandle | None = None
        self._zk_timer: asyncio.TimerHandle | None = None
        ctx.fail = self.fail
        ctx.state_changed = self._state_changed

    # --- the one way out -----------------------------------------------------------------------

    def fail(self, reason: Fatal) -> None:
        if not self._failed.done():
            self._failed.set_exception(reason)

    # --- what ZooKeeper shows of us ------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        slave = self.role if isinstance(self.role, SlaveRole) else None
        return {"pid": os.getpid(), "role": self.role_name,
                "log_position": self.ctx.log.position, "epoch": self.ctx.log.epoch,
                "started_at": self.started_at, "ready": self.role_name != "starting",
                "reads_served": slave.reads_served if slave else 0,
                "suspect": bool(slave and (slave.suspect or slave.behind))}

    async def publish_state(self) -> None:
        info = self.info()
        if info != self._published:
            await self.dcs.update_worker(self.ctx.worker_id, info)
            self._published = info

    def _state_changed(self) -> None:
        task = asyncio.create_task(self.publish_state())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.dcs.register_worker(self.ctx.worker_id, self.info())
        self.dcs.on_state(self._on_zookeeper)
        connection = self.ctx.connection
        connection.close_callbacks.add(self._on_broker_lost)
        connection.reconnect_callbacks.add(self._on_broker_back)
        epoch = await self.dcs.epoch()
        self.dcs.watch_epoch(self._epochs.put_nowait)
        await self._start_role(epoch)
        await self.publish_state()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        watchers = [self.ctx.watch(asyncio.create_task(self._follow_epochs(), name="epochs")),
                    self.ctx.watch(asyncio.create_task(self._heartbeat(), name="heartbeat")),
                    self.ctx.watch(asyncio.create_task(self._health(), name="db-health"))]
        stop = asyncio.create_task(self._stop.wait())
        waiting: list[asyncio.Future[Any]] = [stop, self._failed]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if self._failed.done():
            self._failed.result()  # raises the Fatal: main() ends the process, no cleanup
        self.ctx.stopping = True
        for task in [*watchers, stop]:
            task.cancel()
        await self.shutdown()

    async def _become_master(self, epoch: Epoch) -> None:
        self.ctx.log.moved_to(self.ctx.log.position, epoch.number)
        await self.ctx.store.set_log_state(self.ctx.log.position, epoch.number)
        self.role = MasterRole(self.ctx)
        await self.role.start()
        self.role_name = "master"

    async def _follow_epochs(self) -> None:
        while True:
            epoch = await self._epochs.get()
            mine = epoch.master == self.ctx.worker_id
            if mine and isinstance(self.role, SlaveRole):
                await self._take_over(self.role, epoch)
            elif not mine and isinstance(self.role, MasterRole) and \
                    epoch.number > self.ctx.log.epoch:
                raise Fatal(f"deposed: epoch {epoch.number} names {epoch.master}")

    async def _take_over(self, slave: SlaveRole, epoch: Epoch) -> None:
        if slave.suspect or slave.behind:
            raise Fatal("elected, but our copy may miss entries (the broker dropped us, or the "
                        "master could not replicate to us)")
        log.info("elected master of epoch %s", epoch.number)
        await slave.leave_reads()
        await slave.drain()
        await slave.stop()
        self.ctx.stopping = False  # the slave's loops stopped on purpose; the master's must not
        if self.ctx.log.position < epoch.acked:
            raise Fatal(f"elected, but our copy ends at {self.ctx.log.position}, before the "
                        f"acknowledged {epoch.acked}")
        await self._become_master(epoch)
        await self.publish_state()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(Exception):
                await self.publish_state()

    async def _health(self) -> None:
        """Our database answers a trivial question in time, on a connection of its own, or we
        go: a frozen server must not hold a role hostage."""
        conn = await psycopg.AsyncConnection.connect(self.ctx.store.dsn, autocommit=True)
        try:
            while True:
                await asyncio.sleep(HEALTH_CHECK_S)
                with self.ctx.must_finish(self.ctx.settings.db_deadline_s, "a health check"):
                    try:
                        await conn.execute("SELECT 1")
                    except psycopg.Error as exc:
                        raise Fatal(f"our database does not answer: {exc}") from exc
        finally:
            await conn.close()

    # --- ZooKeeper and the broker going away ---------------------------------------------------

    def _on_zookeeper(self, state: str) -> None:
        if self._failed.done():
            return  # on the way out: kazoo's next session (it makes one) is none of ours
        if state == "lost":
            self.fail(Fatal("our ZooKeeper session has expired"))
        elif state == "suspended":
            if self._zk_timer is None:
                self._zk_timer = asyncio.get_running_loop().call_later(
                    self.ctx.settings.zk_session_timeout_s, self.fail,
                    Fatal("ZooKeeper has been out of reach longer than our session"))
            if isinstance(self.role, MasterRole):
                self.ctx.watch(asyncio.create_task(self.role.pause(), name="pause"), loop=False)
        elif state == "connected":
            if self._zk_timer is not None:
                self._zk_timer.cancel()
                self._zk_timer = None
            if isinstance(self.role, MasterRole):
                self.ctx.watch(asyncio.create_task(self.role.resume(), name="resume"),
                               loop=False)

    async def _start_role(self, epoch: Epoch) -> None:
        """Become master or slave; a Fatal meanwhile (the broker away past its grace, the
        session lost) ends the start at once, and so does a start that takes too long: a start
        can wait on a broker that never answers (a quorum queue declared while its leader's node
        is down was seen to hang), and nothing else would end it."""
        async def start() -> None:
            if epoch.master == self.ctx.worker_id:
                await self._become_master(epoch)
            else:
                self.role = SlaveRole(self.ctx)
                await self.role.start()
                self.role_name = "slave"

        starting = asyncio.create_task(start(), name="start-role")
        bound = START_BOUND_FACTOR * self.ctx.settings.worker_start_timeout_s
        await asyncio.wait([starting, self._failed], timeout=bound,
                           return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            if self._failed.done():
                self._failed.result()  # raises the Fatal
            raise Fatal(f"the {'master' if epoch.master == self.ctx.worker_id else 'slave'} "
                        f"role did not start within {bound:.0f} s")
        starting.result()

    def _on_broker_lost(self, *_: Any) -> None:
        if self._broker_timer is None:
            log.warning("lost the broker; leaving in %.0f s unless it comes back",
                        self.ctx.settings.broker_grace_s)
            self._broker_timer = asyncio.get_running_loop().call_later(
                self.ctx.settings.broker_grace_s, self.fail,
                Fatal("the broker has been out of reach too long"))

    def _on_broker_back(self, *_: Any) -> None:
        if self._broker_timer is not None:
            self._broker_timer.cancel()
            self._broker_timer = None

    async def shutdown(self) -> None:
        """A graceful stop (scale-down or ``rideshare down``): no read in flight is dropped."""
        log.info("stopping gracefully")
        self.ctx.connection.close_callbacks.discard(self._on_broker_lost)
        if self.role is not None:
            await self.role.stop()
        with contextlib.suppress(Exception):
            await self.dcs.unregister_worker(self.ctx.worker_id)
        with contextlib.suppress(Exception):
            await self.dcs.stop()
        with contextlib.suppress(Exception):
            await self.ctx.connection.close()
        await self.ctx.store.close()
