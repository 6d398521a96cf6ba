"""The coordination backend: ZooKeeper through kazoo, behind one small interface.

Layout under the root (``RIDESHARE_ZK_ROOT``, default ``/rideshare``)::

    workers/<id>   ephemeral, JSON {"pid", "role", "log_position", "epoch", "started_at",
                   "ready", "reads_served", "suspect"}
    acked          persistent, JSON {"epoch", "position"} of the newest acknowledged write
    sync-queues/<id>  persistent, the name of a slave's durable sync queue (on a cluster),
                   deleted with its queue by the orchestrator once that slave is gone
    behind/<id>    persistent: a slave the master could not replicate a batch to (its queue
                   refused it); never elected until it has reloaded a copy into a fresh queue
    epoch          persistent, JSON {"epoch": n, "master": "<worker id>", "acked": position};
                   its version makes every change a compare-and-set, so two elections can never
                   both win; "acked" is the highest log position acknowledged when it was made,
                   which the new master must hold

Kazoo runs its own threads; every callback given here is handed to the asyncio loop with
``call_soon_threadsafe``, and blocking calls run in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.retry import KazooRetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Epoch:
    number: int
    master: str | None
    version: int = -1  # the znode version it was read at; -1: the node does not exist yet
    acked: int = 0  # the highest log position acknowledged when the epoch began

    @classmethod
    def from_node(cls, data: bytes, version: int) -> Epoch:
        value = orjson.loads(data)
        return cls(value["epoch"], value.get("master"), version, value.get("acked", 0))


class Coordinator:
    def __init__(self, hosts: str, root: str, session_timeout_s: float) -> None:
        self.root = root.rstrip("/")
        # Reconnect within a fraction of the session timeout, so that a ZooKeeper restart costs
        # no session (kazoo's default backoff grows to minutes).
        self._zk = KazooClient(
            hosts=hosts, timeout=session_timeout_s,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=1.5, max_delay=0.5))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_state: list[Callable[[str], None]] = []

    # --- connection ----------------------------------------------------------------------------

    async def start(self, timeout_s: float = 15.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._zk.add_listener(self._state_listener)
        await asyncio.to_thread(self._zk.start, timeout_s)
        await asyncio.to_thread(self._zk.ensure_path, f"{self.root}/workers")

    async def stop(self) -> None:
        self._on_state.clear()  # closing our own session is not losing it
        await asyncio.to_thread(self._zk.stop)
        await asyncio.to_thread(self._zk.close)

    def on_state(self, callback: Callable[[str], None]) -> None:
        """``callback`` runs on the loop with "suspended" (ZooKeeper out of reach: the session
        may be expiring), "connected" (back, the session held) or "lost" (the session expired:
        our ephemeral nodes are gone)."""
        self._on_state.append(callback)

    def _state_listener(self, state: str) -> None:
        name = {KazooState.LOST: "lost", KazooState.SUSPENDED: "suspended",
                KazooState.CONNECTED: "connected"}.get(state)
        loop = self._loop
        if name is not None and loop is not None and not loop.is_closed():
            for callback in list(self._on_state):
                loop.call_soon_threadsafe(callback, name)

    def _threadsafe(self, callback: Callable[..., None]) -> Callable[..., None]:
        loop = self._loop
        assert loop is not None, "start() first"

        def call(*args: Any) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback, *args)

        return call

    # --- workers -------------------------------------------------------------------------------

    def _worker_path(self, worker_id: str) -> str:
        return f"{self.root}/workers/{worker_id}"

    async def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self._zk.create, self._worker_path(worker_id), orjson.dumps(info), ephemeral=True)
        except NodeExistsError:
            await self.update_worker(worker_id, info)

    async def update_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """Our znode's new data; made again if ZooKeeper lost it (our session still holds)."""
        try:
            await asyncio.to_thread(self._zk.set, self._worker_path(worker_id),
                                    orjson.dumps(info))
        except NoNodeError:
            await asyncio.to_thread(self._zk.create, self._worker_path(worker_id),
                                    orjson.dumps(info), ephemeral=True, makepath=True)

    async def unregister_worker(self, worker_id: str) -> None:
        try:
            await asyncio.to_thread(self._zk.delete, self._worker_path(worker_id))
        except NoNodeError:
            pass

    async def workers(self) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self._workers_blocking)

    def _workers_blocking(self) -> dict[str, dict[str, Any]]:
        out = {}
        try:
            children = self._zk.get_children(f"{self.root}/workers")
        except NoNodeError:  # ZooKeeper lost our nodes: make the folder again, it is empty
            self._zk.ensure_path(f"{self.root}/workers")
            return {}
        for child in children:
            try:
                data, _ = self._zk.get(self._worker_path(child))
            except NoNodeError:
                continue
            out[child] = orjson.loads(data)
        return out

    def watch_workers(self, callback: Callable[[], None]) -> None:
        """``callback`` runs on the loop whenever a worker joins or leaves."""
        notify = self._threadsafe(callback)
        self._zk.ChildrenWatch(f"{self.root}/workers", lambda _children: notify())

    # --- epoch -----------------------------------------------------------------------------------

    async def epoch(self) -> Epoch:
        return await asyncio.to_thread(self._epoch_blocking)

    def _epoch_blocking(self) -> Epoch:
        try:
            data, stat = self._zk.get(f"{self.root}/epoch")
        except NoNodeError:
            return Epoch(0, None)
        return Epoch.from_node(data, stat.version)

    async def advance_epoch(self, seen: Epoch, master: str, acked: int = 0) -> Epoch | None:
        """Name ``master`` for the epoch after ``seen``; None if someone changed it first. A
        ``seen`` without a version (the node is missing, perhaps lost by ZooKeeper) makes it."""
        number = seen.number + 1
        data = orjson.dumps({"epoch": number, "master": master, "acked": acked})
        path = f"{self.root}/epoch"
        try:
            if seen.version < 0:
                await asyncio.to_thread(self._zk.create, path, data, makepath=True)
                return Epoch(number, master, 0, acked)
            stat = await asyncio.to_thread(self._zk.set, path, data, seen.version)
            return Epoch(number, master, stat.version, acked)
        except (BadVersionError, NodeExistsError, NoNodeError):
            return None

    # --- sync queues that outlive their slaves (quorum queues on a cluster) ----------------------

    async def register_sync_queue(self, worker_id: str, queue: str) -> None:
        path = f"{self.root}/sync-queues/{worker_id}"
        try:
            await asyncio.to_thread(self._zk.create, path, queue.encode(), makepath=True)
        except NodeExistsError:
            await asyncio.to_thread(self._zk.set, path, queue.encode())

    async def sync_queues(self) -> dict[str, str]:
        """The durable sync queue of each slave that registered one: worker id -> queue."""
        return await asyncio.to_thread(self._sync_queues_blocking)

    def _sync_queues_blocking(self) -> dict[str, str]:
        out = {}
        try:
            owners = self._zk.get_children(f"{self.root}/sync-queues")
        except NoNodeError:
            return {}
        for owner in owners:
            with contextlib.suppress(NoNodeError):
                out[owner] = self._zk.get(f"{self.root}/sync-queues/{owner}")[0].decode()
        return out

    async def forget_sync_queue(self, worker_id: str) -> None:
        with contextlib.suppress(NoNodeError):
            await asyncio.to_thread(self._zk.delete, f"{self.root}/sync-queues/{worker_id}")

    # --- slaves a master could not replicate to -------------------------------------------------

    async def mark_behind(self, worker_id: str) -> None:
        """This slave missed a batch the master committed: never elect it until it has reloaded
        a copy (it clears the mark then). Made before the batch is acknowledged."""
        with contextlib.suppress(NodeExistsError):
            await asyncio.to_thread(self._zk.create, f"{self.root}/behind/{worker_id}", b"",
                                    makepath=True)

    async def clear_behind(self, worker_id: str) -> None:
        with contextlib.suppress(NoNodeError):
            await asyncio.to_thread(self._zk.delete, f"{self.root}/behind/{worker_id}")

    async def behind(self) -> set[str]:
        try:
            return set(await asyncio.to_thread(self._zk.get_children, f"{self.root}/behind"))
        except NoNodeError:
            return set()

    def watch_behind(self, worker_id: str, callback: Callable[[bool], None]) -> None:
        """``callback(True)`` on the loop when the master marks this slave behind."""
        notify = self._threadsafe(callback)
        self._zk.DataWatch(f"{self.root}/behind/{worker_id}",
                           lambda data, stat: notify(stat is not None))

    # --- the newest acknowledged write -----------------------------------------------------------

    async def record_acked(self, epoch: int, position: int) -> None:
        """Keep the (epoch, log position) of the newest acknowledged write: no master may ever
        start from a copy behind it, whatever happens to the orchestrator."""
        data = orjson.dumps({"epoch": epoch, "position": position})
        path = f"{self.root}/acked"
        try:
            await asyncio.to_thread(self._zk.set, path, data)
        except NoNodeError:
            with contextlib.suppress(NodeExistsError):
                await asyncio.to_thread(self._zk.create, path, data, makepath=True)

    async def acked(self) -> tuple[int, int]:
        try:
            data, _ = await asyncio.to_thread(self._zk.get, f"{self.root}/acked")
        except NoNodeError:
            return 0, 0
        value = orjson.loads(data)
        return value["epoch"], value["position"]

    def watch_epoch(self, callback: Callable[[Epoch], None]) -> None:
        notify = self._threadsafe(callback)

        def on_change(data: bytes | None, stat: Any) -> None:
            if data:
                notify(Epoch.from_node(data, stat.version))

        self._zk.DataWatch(f"{self.root}/epoch", on_change)

