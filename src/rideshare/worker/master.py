"""The master: the only consumer of writeQ. Group commit, then replicate, then reply, then ack.

Crash analysis: before the commit nothing happened, and writeQ redelivers. After the commit but
before the sync publish, this copy is ahead of every slave and is discarded with it; the next
master applies the redelivered write. After the sync publish the slaves hold it, and a redelivery
is found by its write id and answered with its stored result, never applied twice.

No message stops the master: one that is not a writeQ message, or a write whose operations are
not valid, is answered with a 400 and dead-lettered; a write the database refuses for its content
(SQLSTATE classes 22, 23, 54, 42) gets a 4xx, its refusal is stored like any result, and it is
dead-lettered. Only trouble of the database itself (``dberrors``) makes the master step down: the
batch is answered with 503s and not acknowledged, so the next master takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import aio_pika
import orjson
import psycopg
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelAccessRefused

from rideshare.errors import Fatal
from rideshare.messages import (
    BadMessage,
    PositionRequest,
    SnapshotRequest,
    Write,
    WriteBatch,
    decode_write_queue,
)
from rideshare.messaging import (
    SEND_ERRORS,
    Topology,
    cancelled_under_us,
    declare,
    message,
    reply,
    settle,
    unbind_sync_queue,
    write_queue_arguments,
)
from rideshare.protocol import PROTOCOL_VERSION
from rideshare.worker.context import Context, dead_letter, error_reply
from rideshare.worker.dberrors import DbVerdict, judge_error
from rideshare.worker.pgserver import bin_dir
from rideshare.worker.replication import forget_decision
from rideshare.worker.snapshot import SnapshotSource

log = logging.getLogger(__name__)
REPLICATION_DEADLINE_S = 15.0
TAKE_WRITE_QUEUE_DEADLINE_S = 60.0
SEND_ERRORS_OR_CANCELLED: tuple[type[BaseException], ...] = (*SEND_ERRORS,
                                                             asyncio.CancelledError)


class _ContentError(Exception):
    def __init__(self, verdict: DbVerdict) -> None:
        super().__init__(verdict.sentence)
        self.verdict = verdict


class _Trouble(Exception):
    def __init__(self, verdict: DbVerdict) -> None:
        super().__init__(verdict.sentence)
        self.verdict = verdict


Decoded = WriteBatch | SnapshotRequest | PositionRequest | None


class MasterRole:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._busy = False
        self.paused = False
        self._last_forget_at = time.time()
        self.snapshots = SnapshotSource(ctx.connection, ctx.store.dsn,
                                        bin_dir(ctx.settings) / "psql")

    async def start(self) -> None:
        settings = self.ctx.settings
        self._sync_channel = await self.ctx.connection.channel(publisher_confirms=True)
        self._reply_channel = await self.ctx.connection.channel(publisher_confirms=False)
        self.topology: Topology = await declare(self._sync_channel, settings.queue_prefix,
                                                self.ctx.quorum, settings.dead_letter_max_length)
        self._loop_task = self.ctx.watch(asyncio.create_task(self._batches(),
                                                             name="master-batches"))
        await self._take_write_queue()
        log.info("master of epoch %s from log position %s", self.ctx.log.epoch,
                 self.ctx.log.position)

    async def _take_write_queue(self) -> None:
        """Consume writeQ exclusively; while a deposed master still holds it, keep asking. On a
        cluster, writeQ is a quorum queue with a single active consumer: ours becomes active when
        the deposed master's goes (its answers are refused meanwhile: they carry an old epoch)."""
        deadline = time.monotonic() + TAKE_WRITE_QUEUE_DEADLINE_S
        while True:
            channel = await self.ctx.connection.channel()
            await channel.set_qos(prefetch_count=self.ctx.settings.batch_size)
            queue = await channel.declare_queue(self.topology.names["write"], durable=True,
                                                arguments=write_queue_arguments(self.ctx.quorum))
            try:
                self._consumer_tag = await queue.consume(self._deliver,
                                                         exclusive=not self.ctx.quorum)
                self._write_channel, self._write_queue = channel, queue
                return
            except ChannelAccessRefused:
                if time.monotonic() > deadline:
                    raise Fatal("writeQ is still held by another consumer") from None
                log.warning("writeQ still has another consumer; waiting for it to go")
                await asyncio.sleep(0.2)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        # A plain method, not ``Queue.put_nowait``: aio-pika formats its callback's repr, and a
        # queue's repr prints every message waiting in it.
        self._inbox.put_nowait(incoming)

    async def _let_go_of_write_queue(self) -> None:
        """No more deliveries; what was delivered and not acknowledged goes back to writeQ."""
        if self._consumer_tag is not None:
            self._consumer_tag = None
            with contextlib.suppress(Exception):  # the broker requeues every unacked message
                await asyncio.wait_for(self._write_channel.close(), 5)
        while not self._inbox.empty():
            self._inbox.get_nowait()

    async def pause(self) -> None:
        """ZooKeeper is out of reach: take no more writes until it is back (our session may be
        expiring, and another master may be elected)."""
        if not self.paused:
            self.paused = True
            log.warning("ZooKeeper is out of reach: taking no writes")
            await self._let_go_of_write_queue()

    async def resume(self) -> None:
        if self.paused:
            self.paused = False
            log.info("ZooKeeper is back and our session held: taking writes again")
            await self._take_write_queue()

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
            self.ctx.stopping = True
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.snapshots.close()

    # --- the loop ------------------------------------------------------------------------------

    async def _batches(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self.ctx.settings.batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            if self.paused:
                continue  # dropped here; the closed channel gave them back to writeQ
            self._busy = True
            try:
                # Every step below is bounded; this is the net under all of them together.
                limit = self.ctx.settings.db_deadline_s + REPLICATION_DEADLINE_S + 30
                with self.ctx.must_finish(limit, "a batch of writes"):
                    await self._process(batch)
            finally:
                self._busy = False

    async def _process(self, batch: list[AbstractIncomingMessage]) -> None:
        decoded = [await self._decode(m) for m in batch]
        writes = [w for d in decoded if isinstance(d, WriteBatch) for w in d.writes]
        try:
            results = await self._commit([w for w in writes if w.problem is None])
        except _Trouble as exc:
            for request, d in zip(batch, decoded, strict=True):
                if isinstance(d, WriteBatch):
                    await reply(self._reply_channel, request,
                                error_reply(503, exc.verdict.sentence))
            raise Fatal(f"stepping down: {exc.verdict.sentence}") from exc
        for w in writes:
            if w.problem is not None:
                results[w.id] = error_reply(400, w.problem)
                await self._set_aside(w, w.problem)
        for request, d in zip(batch, decoded, strict=True):
            if isinstance(d, WriteBatch):
                await reply(self._reply_channel, request, self._answer(d, results))
            elif isinstance(d, SnapshotRequest):
                try:
                    with self.ctx.must_finish(self.ctx.settings.db_deadline_s, "a snapshot"):
                        await self.snapshots.begin(d)
                except psycopg.Error as exc:
                    raise Fatal(f"stepping down: {judge_error(exc).sentence}") from exc
            elif isinstance(d, PositionRequest):  # ordered after every write committed before
                await reply(self._reply_channel, request, {
                    "position": self.ctx.log.position, "epoch": self.ctx.log.epoch})
        await settle(batch[-1], multiple=True)

    async def _decode(self, incoming: AbstractIncomingMessage) -> Decoded:
        try:
            return decode_write_queue(incoming.body)
        except BadMessage as exc:
            log.warning("a message on writeQ set aside: %s", exc)
            await dead_letter(self._reply_channel, self.topology.names["dead"], incoming.body,
                              f"writeQ: {exc}", self.ctx.worker_id)
            await reply(self._reply_channel, incoming,
                        error_reply(400, f"The message is not a write: {exc}."))
            return None

    def _answer(self, batch: WriteBatch, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        stamp = {"epoch": self.ctx.log.epoch, "master": self.ctx.worker_id}
        answers = [{**results[w.id], **stamp} for w in batch.writes]
        return {**stamp, "answers": answers} if batch.several else answers[0]

    async def _set_aside(self, write: Write, reason: str) -> None:
        await dead_letter(self._reply_channel, self.topology.names["dead"],
                          orjson.dumps({"id": write.id, "ops": write.ops}), reason,
                          self.ctx.worker_id)

    # --- group commit --------------------------------------------------------------------------

    async def _commit(self, writes: list[Write]) -> dict[str, dict[str, Any]]:
        """Apply the writes not applied before (group commit), replicate them, and return the
        result of every write id, old or new."""
        if not writes:
            return {}
        store = self.ctx.store
        try:
            with self.ctx.must_finish(self.ctx.settings.db_deadline_s, "a group commit"):
                known = await store.applied_results([w.id for w in writes])
                try:  # the common case: nothing is refused, so no savepoint per write is needed
                    entries = await self._apply_batch(writes, dict(known), savepoints=False)
                except _ContentError:
                    entries = await self._apply_batch(writes, dict(known), savepoints=True)
        except psycopg.Error as exc:
            raise _Trouble(judge_error(exc)) from exc
        if entries:
            self.ctx.log.moved_to(entries[-1]["position"], self.ctx.log.epoch)
            await self._replicate({"v": PROTOCOL_VERSION, "epoch": self.ctx.log.epoch,
                                   "entries": entries})
            for entry in entries:
                if not entry["result"].get("ok"):
                    await self._set_aside(Write(entry["id"], []), entry["result"]["error"])
        return {**known, **{e["id"]: e["result"] for e in entries}}

    async def _apply_batch(self, writes: list[Write], known: dict[str, dict[str, Any]],
                           savepoints: bool) -> list[dict[str, Any]]:
        """Apply every write not applied before, in one transaction; return the log entries.
        Without savepoints, a refused write rolls the whole batch back (``_ContentError``); with
        them, only that write, whose refusal becomes its stored result."""
        store, ctx = self.ctx.store, self.ctx
        entries: list[dict[str, Any]] = []
        position = ctx.log.position
        now = time.time()
        async with store.conn.transaction():
            for write in writes:
                if write.id in known:
                    continue
                position += 1
                try:
                    resolved, results = await store.apply(write.ops, position, resolve=True,
                                                          savepoint=savepoints)
                    result = {"ok": True, "position": position, "results": results}
                except psycopg.Error as exc:
                    verdict = judge_error(exc)
                    if verdict.trouble:
                        raise
                    if not savepoints:
                        raise _ContentError(verdict) from exc
                    resolved, result = [], error_reply(verdict.status, verdict.sentence,
                                                       position=position)
                entries.append({"position": position, "id": write.id, "ops": resolved,
                                "result": result, "at": int(now)})
                known[write.id] = result
            if entries:
                await store.record_log(entries, ctx.log.epoch)
                forget = forget_decision(ctx.log.position, position, now, self._last_forget_at,
                                         ctx.settings.write_ids_kept,
                                         ctx.settings.write_ids_max_age_s)
                if forget is not None:
                    await store.forget_write_ids(forget)
                    entries[-1]["forget"] = forget
        if entries and "forget" in entries[-1]:
            self._last_forget_at = now
        return entries

    async def _replicate_one_by_one(self, batch: dict[str, Any]) -> None:
        """The batch to each slave's queue on its own; a slave whose queue refuses it is marked
        behind in ZooKeeper (never elected until it reloads a copy into a fresh queue) and its
        queue unbound. Once it returns, every slave has the batch or is marked behind."""
        behind = await self.ctx.dcs.behind() | {self.ctx.worker_id}
        targets = {w: q for w, q in (await self.ctx.dcs.sync_queues()).items()
                   if w not in behind}

        async def send(queue: str) -> bool:
            try:
                confirmed = await asyncio.wait_for(self._sync_channel.default_exchange.publish(
                    message(batch, persistent=True, message_id=uuid.uuid4().hex),
                    routing_key=queue, mandatory=True), 5)
                return not isinstance(confirmed, DeliveredMessage)  # returned: no such queue
            except SEND_ERRORS as exc:
                log.warning("the sync queue %s refused a batch: %r", queue, exc)
                return False

        sent = await asyncio.gather(*(send(q) for q in targets.values()))
        for (worker_id, queue), ok in zip(targets.items(), sent, strict=True):
            if not ok:
                await self.ctx.dcs.mark_behind(worker_id)
                log.warning("slave %s is behind: it reloads a copy before it may lead", worker_id)
                try:
                    await unbind_sync_queue(self._sync_channel, self.topology, queue)
                except SEND_ERRORS as exc:
                    log.warning("could not unbind %s (its slave unbinds it): %r", queue, exc)

    async def _replicate(self, batch: dict[str, Any]) -> None:
        """Publish a committed batch to every slave, confirmed, before anyone is answered.

        While the connection is being restored, try again (slaves skip positions they hold);
        if it cannot be done in time, this master's copy is ahead of every slave's and must go.
        """
        deadline = time.monotonic() + REPLICATION_DEADLINE_S
        while True:
            try:
                await asyncio.wait_for(self.topology.sync_exchange.publish(
                    message(batch, persistent=True), routing_key="", mandatory=False), 5)
                return
            except aio_pika.exceptions.DeliveryError as exc:
                # One slave's queue refused it (a quorum queue without a quorum of its nodes):
                # the others must not wait on it (docs/architecture.md, "Replicated
                # infrastructure").
                if self.ctx.quorum:
                    await self._replicate_one_by_one(batch)
                    return
                if time.monotonic() > deadline:
                    raise Fatal(f"a committed batch could not be replicated: {exc!r}") from exc
                log.warning("replicating a batch failed (%r); trying again", exc)
                await asyncio.sleep(0.2)
            except SEND_ERRORS_OR_CANCELLED as exc:
                if isinstance(exc, asyncio.CancelledError) and not cancelled_under_us():
                    raise
                if time.monotonic() > deadline:
                    raise Fatal(f"a committed batch could not be replicated: {exc!r}") from exc
                log.warning("replicating a batch failed (%r); trying again", exc)
                await asyncio.sleep(0.2)
