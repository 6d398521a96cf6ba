"""The two roles a worker can play: master (writes) and slave (reads, and a copy of the log).

Both run the same code and share one database; ``main.py`` switches a worker from slave to master
when an election names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import ChannelAccessRefused
from psycopg_pool import AsyncConnectionPool

from rideshare.config import Settings
from rideshare.messaging import AMQP_ERRORS, Topology, declare, message, reply, settle
from rideshare.protocol import (
    KIND_MARKER,
    KIND_POSITION,
    KIND_SNAPSHOT,
    KIND_WRITE,
    KIND_WRITES,
    PROTOCOL_VERSION,
    Query,
    parse_read,
)
from rideshare.worker.pgserver import bin_dir
from rideshare.worker.replication import (
    PositionWaiters,
    Verdict,
    apply_entries,
    forget_decision,
    judge,
)
from rideshare.worker.snapshot import SnapshotFailed, SnapshotSource, receive_snapshot
from rideshare.worker.store import Conflict, Store

log = logging.getLogger(__name__)
REPLICATION_DEADLINE_S = 15.0
DRAIN_TIMEOUT_S = 30.0


def fatal(reason: str) -> None:
    """Stop acting in any role at once: the orchestrator replaces us."""
    log.error("stopping now: %s", reason)
    logging.shutdown()
    os._exit(3)


def fatal_on_failure(task: asyncio.Task[Any]) -> None:
    """A role's loop must never end quietly: a master that stops committing must go."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
        fatal(f"{task.get_name()} failed")


@dataclass
class Context:
    """What both roles need from the worker that runs them."""

    settings: Settings
    worker_id: str
    store: Store
    connection: AbstractRobustConnection
    position: int
    epoch: int


RESYNC = object()  # put in a slave's inbox: reload a snapshot before anything else


def _writes_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The writes one writeQ message carries (a snapshot request carries none)."""
    kind = body.get("kind")
    if kind == KIND_WRITES:
        return body["writes"]
    return [body] if kind == KIND_WRITE else []


class MasterRole:
    """The only consumer of writeQ: group commit, then replicate, then reply, then ack."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._busy = False
        self._last_forget_at = time.time()
        self.snapshots = SnapshotSource(ctx.connection, ctx.store.dsn,
                                        bin_dir(ctx.settings) / "psql")

    async def start(self) -> None:
        self._sync_channel = await self.ctx.connection.channel(publisher_confirms=True)
        self._reply_channel = await self.ctx.connection.channel(publisher_confirms=False)
        self.topology: Topology = await declare(self._sync_channel, self.ctx.settings.queue_prefix)
        self._loop_task = asyncio.create_task(self._batches(), name="master-batches")
        self._loop_task.add_done_callback(fatal_on_failure)
        await self._take_write_queue()
        log.info("master of epoch %s from log position %s", self.ctx.epoch, self.ctx.position)

    async def _take_write_queue(self) -> None:
        """Consume writeQ exclusively; while a deposed master still holds it, keep asking."""
        while True:
            channel = await self.ctx.connection.channel()
            await channel.set_qos(prefetch_count=self.ctx.settings.batch_size)
            queue = await channel.declare_queue(
                self.topology.names["write"], durable=True)
            try:
                self._consumer_tag = await queue.consume(self._deliver, exclusive=True)
                self._write_channel, self._write_queue = channel, queue
                return
            except ChannelAccessRefused:
                log.warning("writeQ still has another consumer; waiting for it to go")
                await asyncio.sleep(0.2)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        # A plain method, not ``Queue.put_nowait``: aio-pika formats its callback's repr, and a
        # queue's repr prints every message waiting in it.
        self._inbox.put_nowait(incoming)

    async def stop(self) -> None:
        """Take no more writes, and finish the batch in hand: it is committed, replicated and
        answered, or (never taken) redelivered to the next master."""
        if self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._write_queue.cancel(self._consumer_tag)
        deadline = time.monotonic() + 10
        while (self._busy or not self._inbox.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.snapshots.close()

    async def _batches(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self.ctx.settings.batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            self._busy = True
            try:
                await self._process(batch)
            finally:
                self._busy = False

    async def _process(self, batch: list[AbstractIncomingMessage]) -> None:
        requests = [(m, orjson.loads(m.body)) for m in batch]
        writes = [w for _, body in requests for w in _writes_of(body)]
        if writes:
            results = await self._commit(writes)
            for request, body in requests:
                answers = [{**results[w["id"]], "epoch": self.ctx.epoch}
                           for w in _writes_of(body)]
                if body.get("kind") == KIND_WRITES:
                    await reply(self._reply_channel, request,
                                {"epoch": self.ctx.epoch, "answers": answers})
                elif answers:
                    await reply(self._reply_channel, request, answers[0])
        for request, body in requests:
            if body.get("kind") == KIND_SNAPSHOT:  # fixed here, between two group commits
                await self.snapshots.begin(body)
            elif body.get("kind") == KIND_POSITION:  # ordered after every write committed before
                await reply(self._reply_channel, request,
                            {"position": self.ctx.position, "epoch": self.ctx.epoch})
        await settle(batch[-1], multiple=True)

    async def _commit(self, writes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Apply the writes not applied before (group commit), replicate them, and return the
        result of every write id, old or new."""
        store, ctx = self.ctx.store, self.ctx
        known = await store.applied_results([w["id"] for w in writes])
        try:  # the common case: nothing conflicts, so no savepoint per write is needed
            entries = await self._apply_batch(writes, dict(known), savepoints=False)
        except Conflict:
            entries = await self._apply_batch(writes, dict(known), savepoints=True)
        if entries:
            ctx.position = entries[-1]["position"]
            await self._replicate({"v": PROTOCOL_VERSION, "epoch": ctx.epoch, "entries": entries})
        return {**known, **{e["id"]: e["result"] for e in entries}}

    async def _apply_batch(self, writes: list[dict[str, Any]],
                           known: dict[str, dict[str, Any]],
                           savepoints: bool) -> list[dict[str, Any]]:
        """Apply every write not applied before, in one transaction (group commit); return the
        log entries. Without savepoints, a conflict rolls the whole batch back (``Conflict``)."""
        store, ctx = self.ctx.store, self.ctx
        entries: list[dict[str, Any]] = []
        position = ctx.position
        now = time.time()
        async with store.conn.transaction():
            for body in writes:
                if body["id"] in known:
                    continue
                position += 1
                try:
                    resolved, results = await store.apply(body["ops"], position, resolve=True,
                                                          savepoint=savepoints)
                    result = {"ok": True, "position": position, "results": results}
                except Conflict as exc:
                    if not savepoints:
                        raise
                    resolved, result = [], {"ok": False, "status": exc.status,
                                            "error": str(exc), "position": position}
                entries.append({"position": position, "id": body["id"], "ops": resolved,
                                "result": result, "at": int(now)})
                known[body["id"]] = result
            if entries:
                await store.record_log(entries, ctx.epoch)
                forget = forget_decision(ctx.position, position, now, self._last_forget_at,
                                         ctx.settings.write_ids_kept,
                                         ctx.settings.write_ids_max_age_s)
                if forget is not None:
                    await store.forget_write_ids(forget)
                    entries[-1]["forget"] = forget
        if entries and "forget" in entries[-1]:
            self._last_forget_at = now
        return entries

    async def _replicate(self, batch: dict[str, Any]) -> None:
        """Publish a committed batch to every slave, confirmed, before anyone is answered.

        While the connection is being restored, try again (slaves skip positions they hold);
        if it cannot be done in time, this master's copy is ahead of every slave's and must go.
        """
        deadline = time.monotonic() + REPLICATION_DEADLINE_S
        while True:
            try:
                await self.topology.sync_exchange.publish(
                    message(batch, persistent=True), routing_key="", mandatory=False, timeout=5)
                return
            except (*AMQP_ERRORS, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    fatal(f"a committed batch could not be replicated: {exc!r}")
                log.warning("replicating a batch failed (%r); trying again", exc)
                await asyncio.sleep(0.2)


class SlaveRole:
    """Follows the log from a snapshot, and answers reads once it has applied far enough."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.waiters = PositionWaiters()
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._stream_epoch = ctx.epoch
        self._reads_in_flight: set[asyncio.Task[None]] = set()
        self._marker: asyncio.Future[None] | None = None
        self._read_tag: str | None = None
        self._apply_task: asyncio.Task[None] | None = None
        self.reads_served = 0
        self.suspect = False  # our copy may miss entries (see _on_reconnect)

    @property
    def applied(self) -> int:
        return self.waiters.applied

    async def start(self) -> None:
        settings = self.ctx.settings
        self._sync_channel: AbstractChannel = await self.ctx.connection.channel()
        await self._sync_channel.set_qos(prefetch_count=64)
        self.topology = await declare(self._sync_channel, settings.queue_prefix)
        self._sync_queue: AbstractQueue = await self._sync_channel.declare_queue(
            f"{self.topology.names['sync']}.{self.ctx.worker_id}", exclusive=True)
        await self._sync_queue.bind(self.topology.sync_exchange)
        self._sync_tag = await self._sync_queue.consume(self._deliver)
        # Our sync queue lives as long as our connection: after a reconnect it is a new, empty
        # queue, and what the old one held is gone. Until a fresh snapshot, we must not serve
        # as a copy, and must not be promoted.
        self.ctx.connection.reconnect_callbacks.add(self._on_reconnect)
        await self._load_snapshot()
        self._apply_task = asyncio.create_task(self._apply_log(), name="slave-apply")
        self._apply_task.add_done_callback(fatal_on_failure)
        self._reply_channel = await self.ctx.connection.channel(publisher_confirms=False)
        self._read_channel = await self.ctx.connection.channel()
        await self._read_channel.set_qos(prefetch_count=32)
        self._pool = AsyncConnectionPool(
            self.ctx.store.dsn, min_size=1, max_size=4, open=False,
            kwargs={"autocommit": True, "row_factory": self.ctx.store.conn.row_factory})
        await self._pool.open(wait=True, timeout=30)
        read_queue = await self._read_channel.declare_queue(self.topology.names["read"],
                                                            durable=True)
        self._read_queue = read_queue
        self._read_tag = await read_queue.consume(self._on_read)
        log.info("slave serving reads from log position %s", self.applied)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(incoming)

    def _on_reconnect(self, *_: Any) -> None:
        log.warning("reconnected to the broker: reloading a snapshot")
        self.suspect = True
        self._inbox.put_nowait(RESYNC)

    async def _load_snapshot(self) -> None:
        """A fresh copy from the master, asked for again until it comes (bounded)."""
        deadline = time.monotonic() + self.ctx.settings.worker_start_timeout_s
        while True:
            try:
                snapshot = await receive_snapshot(
                    self.ctx.connection, self.topology.names["write"], self.ctx.store,
                    max(1.0, min(30.0, deadline - time.monotonic())))
                break
            except (SnapshotFailed, *AMQP_ERRORS) as exc:
                if time.monotonic() > deadline:
                    raise SnapshotFailed(f"no copy could be had: {exc}") from exc
                log.warning("getting a copy failed (%s); asking again", exc)
                await asyncio.sleep(0.5)
        self._stream_epoch = max(self._stream_epoch, snapshot.epoch)
        self.waiters.advance(snapshot.position)
        self.ctx.position, self.ctx.epoch = snapshot.position, self._stream_epoch
        log.info("loaded a copy at log position %s (%.1f MiB in %.1f s)", snapshot.position,
                 snapshot.bytes / (1 << 20), snapshot.seconds)

    async def _apply_log(self) -> None:
        while True:
            incoming = await self._inbox.get()
            if incoming is RESYNC:
                await self._load_snapshot()
                self.suspect = False
                continue
            batch = orjson.loads(incoming.body)
            if batch.get("kind") == KIND_MARKER:
                await settle(incoming)
                if self._marker is not None and not self._marker.done():
                    self._marker.set_result(None)
                continue
            decision = judge(batch, self.applied, self._stream_epoch)
            if decision.verdict is Verdict.APPLY:
                try:
                    await apply_entries(self.ctx.store, decision.entries, decision.epoch)
                except Conflict as exc:
                    log.error("log entry refused (%s): reloading a snapshot", exc)
                    await self._load_snapshot()
                    await settle(incoming)
                    continue
                self._stream_epoch = decision.epoch
                self.ctx.position, self.ctx.epoch = decision.entries[-1]["position"], decision.epoch
                self.waiters.advance(self.ctx.position)
            elif decision.verdict is Verdict.RESNAPSHOT:
                log.warning("%s: reloading a snapshot", decision.reason)
                await self._load_snapshot()
            else:
                self._stream_epoch = max(self._stream_epoch, decision.epoch)
            await settle(incoming)

    async def _on_read(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._serve_read(incoming))
        self._reads_in_flight.add(task)
        task.add_done_callback(self._reads_in_flight.discard)

    async def _serve_read(self, incoming: AbstractIncomingMessage) -> None:
        """One message, one or more reads: all wait for the log position the orchestrator
        had acknowledged when it sent them, then each is answered from the database."""
        body = orjson.loads(incoming.body)
        needed = body.get("min_position", 0)
        if not await self.waiters.wait_for(needed, self.ctx.settings.read_wait_s):
            answer: dict[str, Any] = {
                "ok": False, "status": 503,
                "error": f"this slave is behind (at {self.applied}, the read needs {needed});"
                         " try again"}
        else:
            answers = await asyncio.gather(*(self._answer(read) for read in body["reads"]))
            answer = {"answers": answers}
            self.reads_served += len(answers)
        await reply(self._reply_channel, incoming, answer)
        await settle(incoming)

    async def _answer(self, read: dict[str, Any]) -> dict[str, Any]:
        try:
            request = parse_read({"queries": read["queries"]})
            return {"ok": True, "results": await self._query(list(request.queries))}
        except Exception as exc:  # a bad read must not stop the slave
            log.exception("read failed")
            return {"ok": False, "status": 400, "error": f"the read failed: {exc}"}

    async def _query(self, queries: list[Query]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await Store(conn).query(queries)

    async def stop_reads(self) -> None:
        """Take no new reads and finish those in flight: nothing a client waits on is dropped."""
        if self._read_tag is not None:
            with contextlib.suppress(Exception):
                await self._read_queue.cancel(self._read_tag)
            self._read_tag = None
        # Reads delivered but not started are given back to readQ for the other slaves.
        await asyncio.gather(*self._reads_in_flight, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._read_channel.close()

    async def drain(self) -> None:
        """Apply everything already in our sync queue: a note to ourselves marks its end."""
        self._marker = asyncio.get_running_loop().create_future()
        await self._sync_channel.default_exchange.publish(
            message({"v": PROTOCOL_VERSION, "kind": KIND_MARKER}),
            routing_key=self._sync_queue.name)
        try:
            await asyncio.wait_for(self._marker, DRAIN_TIMEOUT_S)
        except TimeoutError:
            fatal("the sync queue could not be drained; another slave must take over")

    async def stop(self) -> None:
        self.ctx.connection.reconnect_callbacks.discard(self._on_reconnect)
        await self.stop_reads()
        if self._apply_task is not None:
            self._apply_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._apply_task
        with contextlib.suppress(Exception):
            await self._sync_queue.delete(if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            await self._sync_channel.close()
        with contextlib.suppress(Exception):
            await self._pool.close()
