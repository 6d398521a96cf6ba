"""Worker supervision: one reconciliation loop compares what should run (one master, N slaves)
with what runs, and fixes the difference. A crash, a scaling decision and an orchestrator restart
all go through the same code path.

``plan`` is the decision, a pure function; ``Cluster`` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rideshare.config import Settings
from rideshare.dcs import Coordinator, Epoch
from rideshare.orchestrator.adoption import choose_copy
from rideshare.orchestrator.planning import Observed, plan
from rideshare.orchestrator.rpc import Rpc
from rideshare.orchestrator.runtime.base import CopyState, WorkerHandle, WorkerRuntime
from rideshare.orchestrator.scaler import ReadWindow

log = logging.getLogger(__name__)


class WorkerIds:
    """Worker ids that sort by start time: ``w`` and the milliseconds since the epoch, in hex."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return f"w{self._last:x}"


class Cluster:
    def __init__(self, settings: Settings, dcs: Coordinator, runtime: WorkerRuntime,
                 rpc: Rpc) -> None:
        self.settings = settings
        self.dcs = dcs
        self.runtime = runtime
        self.rpc = rpc
        self.window = ReadWindow(settings.scale_interval, settings.reads_per_slave,
                                 settings.max_slaves)
        self.desired_slaves = settings.initial_slaves
        self.epoch = Epoch(0, None)
        self.znodes: dict[str, dict[str, Any]] = {}
        self.retiring: set[str] = set()
        self._to_drop: set[str] = set()  # copies of dead workers: dropped once a master runs
        self._behind: set[str] = set()  # copies proven behind the adopted one
        self._lost: set[str] = set()  # running, but no longer members (no ZooKeeper session)
        self._recorded_acked = (0, 0)  # what ZooKeeper holds of the newest acknowledged write
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = WorkerIds()
        self._registered: set[str] = set()
        self._failed_starts = 0  # workers in a row that died before they were ready
        self._next_start_at = 0.0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.dcs.start()
        self.epoch = await self.dcs.epoch()
        self.rpc.fence(self.epoch.number)
        await self._adopt_running_workers()
        self.dcs.watch_workers(self.wake)
        self.dcs.watch_epoch(self._on_epoch)
        self._task = asyncio.create_task(self._loop(), name="reconcile")

    async def _adopt_running_workers(self) -> None:
        """After an orchestrator restart: take charge of the workers already running."""
        self.znodes = await self.dcs.workers()
        for worker_id, info in self.znodes.items():
            await self.runtime.adopt(worker_id, info["pid"], info.get("started_at", 0.0))
            if info.get("role") == "master" and info.get("epoch", 0) > self.epoch.number:
                # ZooKeeper lost the epoch, but its master runs: the epoch is what it says.
                self.epoch = Epoch(info["epoch"], worker_id)
                self.rpc.fence(self.epoch.number)
        if self.znodes:
            slaves = sum(1 for i in self.znodes.values() if i["role"] != "master")
            self.desired_slaves = max(self.desired_slaves, slaves)
            log.info("adopted %d running workers", len(self.znodes))

    async def stop(self) -> None:
        """Stop every worker gracefully (their data stays), then the loop."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        alive = self.runtime.alive()
        master = self.epoch.master
        for worker_id in sorted(alive, key=lambda w: w == master):  # slaves first
            await self.runtime.stop(worker_id)
        deadline = time.monotonic() + 15
        while self.runtime.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for worker_id in self.runtime.alive():
            log.warning("worker %s ignored SIGTERM; killing it", worker_id)
            await self.runtime.kill(worker_id)
        await self.runtime.reap()
        await self.dcs.stop()

    def wake(self) -> None:
        self._wake.set()

    def set_desired_slaves(self, desired: int) -> None:
        """Set the number of slaves now (the next scaling window decides again)."""
        self.desired_slaves = desired
        self.wake()

    def _on_epoch(self, epoch: Epoch) -> None:
        if epoch.number >= self.epoch.number:
            self.epoch = epoch
            self.rpc.fence(epoch.number)
        self.wake()

    # --- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.reconcile_interval_s)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciliation failed; trying again")
                await asyncio.sleep(1.0)

    async def reconcile(self) -> None:
        for worker_id in await self.runtime.reap():
            log.info("worker %s has exited%s", worker_id,
                     " (retired)" if worker_id in self.retiring else "")
            if self.znodes.get(worker_id, {}).get("role", "starting") == "starting":
                self._failed_starts += 1
                delay = min(10.0, 0.25 * 2 ** self._failed_starts)
                self._next_start_at = time.monotonic() + delay
                log.warning("worker %s died before it was ready; next start in %.1f s "
                            "(see its log in %s)", worker_id, delay, self.settings.run_dir)
            self.retiring.discard(worker_id)
            self._to_drop.add(worker_id)
        self._scale()
        self.znodes = await self.dcs.workers()
        if any(i["role"] != "starting" for i in self.znodes.values()):
            self._failed_starts = 0
        alive = self.runtime.alive()
        self._registered = {w for w in self._registered if w in alive} | (
            set(self.znodes) & set(alive))
        await self._keep_epoch_node()
        acked = (self.rpc.acked_epoch, self.rpc.acked_position)
        if acked != self._recorded_acked:
            await self.dcs.record_acked(*acked)
            self._recorded_acked = acked
        behind = await self.dcs.behind() if self.rpc.quorum else set()
        seen = Observed(alive, {w: i["role"] for w, i in self.znodes.items()},
                        self.epoch, frozenset(self.retiring), self.desired_slaves,
                        frozenset(self._registered),
                        frozenset(w for w, i in self.znodes.items() if i.get("suspect"))
                        | frozenset(behind))
        todo = plan(seen)
        for worker_id in todo.kill:
            if self.settings.kill_lost_workers:
                log.warning("killing worker %s: its ZooKeeper session is gone", worker_id)
                await self.runtime.kill(worker_id)
            elif worker_id not in self._lost:
                log.warning("worker %s lost its ZooKeeper session; it leaves by itself",
                            worker_id)
        self._lost = set(todo.kill)
        if time.monotonic() < self._next_start_at:
            todo.start_master, todo.start_slaves = False, 0
        if todo.start_master:
            await self._start_master()
            return
        if todo.elect is not None:
            await self._elect(todo.elect)
        for _ in range(todo.start_slaves):
            await self.runtime.start(self._ids.next())
        for worker_id in todo.retire:
            log.info("scaling down: retiring slave %s", worker_id)
            self.retiring.add(worker_id)
            await self.runtime.stop(worker_id)
        await self._drop_dead_copies()
        if self.rpc.quorum:
            await self._delete_gone_sync_queues(alive)

    def _scale(self) -> None:
        now = time.time()
        if self.window.due(now):
            before = self.desired_slaves
            self.desired_slaves = self.window.close(now, before)
            if self.desired_slaves != before:
                log.info("scaling: %d -> %d slaves", before, self.desired_slaves)

    async def _keep_epoch_node(self) -> None:
        """Should ZooKeeper lose the epoch node, make it again as we know it: an epoch must never
        go back (slaves ignore batches of older epochs)."""
        if self.epoch.number > 0 and (await self.dcs.epoch()).version < 0:
            log.warning("the epoch node is gone from ZooKeeper; making it again")
            restored = await self.dcs.advance_epoch(
                replace(self.epoch, number=self.epoch.number - 1, version=-1),
                self.epoch.master or "", self.epoch.acked)
            if restored is not None:
                self.epoch = restored

    async def _advance(self, master: str, at_least: int = 0) -> Epoch | None:
        """Name ``master`` for the next epoch (a compare-and-set). Answers of the deposed master
        are refused from before the change is made, not from when we hear of it."""
        current = await self.dcs.epoch()
        base = current if current.number >= self.epoch.number else replace(self.epoch,
                                                                           version=-1)
        if at_least > base.number:
            base = replace(base, number=at_least)
        self.rpc.fence(base.number + 1)
        epoch = await self.dcs.advance_epoch(base, master, self.rpc.acked_position)
        if epoch is None:  # someone moved the epoch first: look again
            self._on_epoch(await self.dcs.epoch())
            return None
        self._on_epoch(epoch)
        return epoch

    async def _elect(self, worker_id: str) -> None:
        epoch = await self._advance(worker_id)
        if epoch is not None:
            log.info("elected %s master of epoch %d", worker_id, epoch.number)

    async def _start_master(self) -> None:
        """No worker runs: the first master takes over the most advanced copy left on disk."""
        copies = await self.runtime.copies()
        states = await asyncio.gather(*(self.runtime.probe(c) for c in copies))
        floor = CopyState(*max(await self.dcs.acked(),
                               (self.rpc.acked_epoch, self.rpc.acked_position)))
        adoption = choose_copy(dict(zip(copies, states, strict=True)), floor)
        if adoption.refused:
            self._next_start_at = time.monotonic() + 5.0
            log.error("no copy on disk holds the newest acknowledged write %s (copies: %s); "
                      "starting no master until one does (one that cannot be read now may)",
                      floor, dict(zip(copies, states, strict=True)))
            return
        worker_id = self._ids.next()
        newest = max((s.epoch for s in states if s is not None), default=0)
        if await self._advance(worker_id, at_least=newest) is None:
            return
        self._to_drop.clear()  # every copy on disk was just weighed: adopted, behind, or kept
        self._behind = set(adoption.behind)
        if adoption.unreadable:
            log.warning("copies that could not be read are kept: %s", adoption.unreadable)
        if adoption.adopt:
            log.info("adopting the copy of %s (%s) for master %s; behind it: %s",
                     adoption.adopt, states[copies.index(adoption.adopt)], worker_id,
                     adoption.behind)
        await self.runtime.start(worker_id, adopt_copy=adoption.adopt)

    async def _delete_gone_sync_queues(self, alive: dict[str, WorkerHandle]) -> None:
        """On a cluster a slave's sync queue outlives it (a durable quorum queue): once the slave
        is gone, its queue goes, or it would fill with every batch, to its bound, for ever."""
        for owner, queue in (await self.dcs.sync_queues()).items():
            if owner not in alive and owner not in self.znodes:
                try:
                    await self.rpc.drop_sync_queue(queue)
                except Exception as exc:  # noqa: BLE001 - the broker is away: next time
                    log.warning("could not delete the sync queue of %s: %r", owner, exc)
                    return
                await self.dcs.forget_sync_queue(owner)
                await self.dcs.clear_behind(owner)
                log.info("deleted the sync queue of %s, which is gone", owner)

    async def _drop_dead_copies(self) -> None:
        """A dead worker's copy goes once a live master holds everything it had; a copy proven
        behind the adopted one goes once the slaves have caught up too."""
        master = self.epoch.master
        if master is None or self.znodes.get(master, {}).get("role") != "master":
            return
        slaves = [w for w in self.slave_ids() if self.znodes.get(w, {}).get("role") == "slave"]
        if not slaves:  # one live copy is not enough to let the others go
            return
        for worker_id in list(self._to_drop):
            if worker_id != master:
                self._to_drop.discard(worker_id)
                await self.runtime.drop_copy(worker_id)
        if self._behind and len(slaves) >= self.desired_slaves:
            for copy_id in sorted(self._behind):
                log.info("removing the copy of %s: it is behind the adopted one", copy_id)
                await self.runtime.drop_copy(copy_id)
            self._behind.clear()

    # --- what the API asks -----------------------------------------------------------------

    def members(self) -> dict[str, WorkerHandle]:
        """The workers that run and belong to the cluster (not those that lost their session)."""
        return {w: h for w, h in self.runtime.alive().items() if w not in self._lost}

    def master_id(self) -> str | None:
        master = self.epoch.master
        return master if master in self.members() else None

    def slave_ids(self) -> list[str]:
        master = self.epoch.master
        return [w for w in self.members() if w != master and w not in self.retiring]

    def worker_pids(self) -> list[int]:
        return sorted(h.pid for w, h in self.members().items() if w not in self.retiring)

    async def crash_master(self) -> int | None:
        master = self.master_id()
        if master is None:
            return None
        pid = self.runtime.alive()[master].pid
        await self.runtime.kill(master)
        self.wake()
        return pid

    async def crash_slave(self) -> int | None:
        alive = self.runtime.alive()
        slaves = [alive[w] for w in self.slave_ids()]
        if not slaves:
            return None
        victim = max(slaves, key=lambda h: h.pid)
        await self.runtime.kill(victim.worker_id)
        self.wake()
        return victim.pid

    def describe(self) -> dict[str, Any]:
        """The shape of GET /api/v1/cluster."""
        master = self.epoch.master
        master_position = self.znodes.get(master or "", {}).get("log_position", 0)
        workers = []
        for worker_id, handle in sorted(self.members().items(), key=lambda kv: kv[1].pid):
            info = self.znodes.get(worker_id, {})
            position = info.get("log_position", 0)
            role = "master" if worker_id == master else "slave"
            workers.append({"id": worker_id, "pid": handle.pid, "role": role,
                            "state": info.get("role", "starting") if worker_id not in
                            self.retiring else "retiring",
                            "log_position": position,
                            "reads_served": info.get("reads_served", 0),
                            "suspect": bool(info.get("suspect")),
                            "lag": 0 if role == "master" else max(0, master_position - position)})
        started = self.window.started_at
        return {
            "epoch": self.epoch.number,
            "workers": workers,
            "slaves": {"desired": self.desired_slaves, "actual": len(self.slave_ids())},
            "scaling": {
                "interval_s": self.window.interval_s,
                "reads_per_slave": self.window.reads_per_slave,
                "max_slaves": self.window.max_slaves,
                "window_reads": self.window.reads,
                "window_started_at": _iso(started) if started is not None else None,
                "decisions": [{"at": _iso(d.at), "window_reads": d.window_reads,
                               "slaves_before": d.slaves_before, "slaves_after": d.slaves_after}
                              for d in self.window.decisions],
            },
            "acked_position": self.rpc.acked_position,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()
