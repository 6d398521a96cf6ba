"""A slave: follows the log from a copy of the master's data, and answers reads once it has applied
far enough.

Its sync queue is bounded (drop-head): a slave that fell too far behind finds a gap and reloads a
copy. While it reloads it takes no reads (other slaves serve them); a read it cannot serve in time
is refused with a 503 that asks the orchestrator to send it to another slave. A slave whose broker
connection dropped has lost the batches its sync queue held: from that moment until its next copy
it is ``suspect`` (its znode says so), and is never promoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from psycopg_pool import AsyncConnectionPool

from rideshare.errors import BadRequest, Fatal
from rideshare.messages import BadMessage, Marker, ReadBatch, decode_read_queue, decode_sync_queue
from rideshare.messaging import (
    AMQP_ERRORS,
    declare,
    declare_sync_queue,
    drop_sync_queue,
    message,
    queue_arguments,
    reply,
    settle,
)
from rideshare.protocol import KIND_MARKER, PROTOCOL_VERSION, Query, parse_read
from rideshare.worker.context import Context, dead_letter, error_reply
from rideshare.worker.dberrors import judge_error
from rideshare.worker.replication import LogWaiters, Verdict, apply_entries, judge
from rideshare.worker.snapshot import SnapshotFailed, receive_snapshot
from rideshare.worker.store import Store

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 30.0
RESYNC = object()  # put in the inbox: reload a copy before anything else
FRESH_QUEUE = object()  # the same, into a fresh sync queue (the old one refused a batch)
COPY_ERRORS: tuple[type[BaseException], ...] = (SnapshotFailed, *AMQP_ERRORS)


class SlaveRole:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.waiters = LogWaiters()
        self.waiters.advance(ctx.log.position, ctx.log.epoch)
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._stream_epoch = ctx.log.epoch  # the newest epoch seen in the sync stream
        self._reads_in_flight: set[asyncio.Task[None]] = set()
        self._marker: asyncio.Future[None] | None = None
        self._read_tag: str | None = None
        self._apply_task: asyncio.Task[None] | None = None
        self._serving = False
        self.reads_served = 0
        self.suspect = False  # our copy may miss entries: never promote us (see module doc)
        self.behind = False  # the master marked us behind: the same, until a fresh copy

    async def start(self) -> None:
        settings, connection = self.ctx.settings, self.ctx.connection
        self._sync_channel: AbstractChannel = await connection.channel()
        await self._sync_channel.set_qos(prefetch_count=64)
        self.topology = await declare(self._sync_channel, settings.queue_prefix,
                                      self.ctx.quorum, settings.dead_letter_max_length)
        self._generation = 0
        self._sync_queue: AbstractQueue = await self._fresh_sync_queue()
        if self.ctx.quorum:  # the master may mark us behind (a batch our queue refused)
            self.ctx.dcs.watch_behind(self.ctx.worker_id, self._on_marked_behind)
        connection.close_callbacks.add(self._on_broker_lost)
        connection.reconnect_callbacks.add(self._on_broker_back)
        await self._load_copy()
        self._apply_task = self.ctx.watch(asyncio.create_task(self._apply_log(),
                                                              name="slave-apply"))
        self._reply_channel = await connection.channel(publisher_confirms=False)
        self._read_channel = await connection.channel()
        await self._read_channel.set_qos(prefetch_count=32)
        self._pool = AsyncConnectionPool(
            self.ctx.store.dsn, min_size=1, max_size=4, open=False, timeout=5,
            kwargs={"autocommit": True, "row_factory": self.ctx.store.conn.row_factory})
        await self._pool.open(wait=True, timeout=30)
        self._read_queue = await self._read_channel.declare_queue(
            self.topology.names["read"], durable=True,
            arguments=queue_arguments(self.ctx.quorum) or None)
        await self._join_reads()

    @property
    def applied(self) -> int:
        return self.waiters.applied

    async def _fresh_sync_queue(self) -> AbstractQueue:
        """A sync queue bound to the fanout, consumed. On a cluster it is a durable quorum queue
        that outlives us: registered in ZooKeeper, so that the orchestrator deletes it once we
        are gone and the master can reach it on its own."""
        queue = await declare_sync_queue(self._sync_channel, self.topology, self.ctx.worker_id,
                                         self.ctx.settings.sync_queue_max_length,
                                         self._generation)
        if self.ctx.quorum:
            await self.ctx.dcs.register_sync_queue(self.ctx.worker_id, queue.name)
        await queue.consume(self._deliver)
        return queue

    def _on_marked_behind(self, marked: bool) -> None:
        if marked and not self.behind:
            log.warning("the master marked us behind: reloading a copy into a fresh queue")
            self.behind = True
            self._inbox.put_nowait(FRESH_QUEUE)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(incoming)

    # --- the broker going and coming back ------------------------------------------------------

    def _on_broker_lost(self, *_: Any) -> None:
        """Our exclusive sync queue went with the connection, and the batches in it (on a
        cluster it is a durable quorum queue, which lost nothing)."""
        if not self.suspect and not self.ctx.quorum:
            log.warning("lost the broker: our copy may now miss entries")
            self.suspect = True
            self.ctx.state_changed()

    def _on_broker_back(self, *_: Any) -> None:
        if not self.ctx.quorum:
            log.warning("reconnected to the broker: reloading a copy")
            self._inbox.put_nowait(RESYNC)

    # --- a copy, and the log after it ----------------------------------------------------------

    async def _load_copy(self) -> None:
        """A fresh copy from the master, asked for again until it comes (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ctx.settings.worker_start_timeout_s
        while True:
            try:
                snapshot = await receive_snapshot(
                    self.ctx.connection, self.topology.names["write"], self.ctx.store,
                    max(1.0, min(30.0, deadline - loop.time())))
                break
            except COPY_ERRORS as exc:
                if loop.time() > deadline:
                    raise Fatal(f"no copy could be had: {exc}") from exc
                log.warning("getting a copy failed (%s); asking again", exc)
                await asyncio.sleep(0.5)
            except psycopg.Error as exc:
                raise Fatal(f"loading a copy: {judge_error(exc).sentence}") from exc
        self._stream_epoch = max(self._stream_epoch, snapshot.epoch)
        self.ctx.log.moved_to(snapshot.position, snapshot.epoch)
        self.waiters.advance(snapshot.position, snapshot.epoch)
        self.suspect = False
        self.ctx.state_changed()
        log.info("loaded a copy at log position %s (%.1f MiB in %.1f s)", snapshot.position,
                 snapshot.bytes / (1 << 20), snapshot.seconds)

    async def _reload_into_a_fresh_queue(self) -> None:
        await self.leave_reads()
        old = self._sync_queue
        self._generation += 1
        self._sync_queue = await self._fresh_sync_queue()  # bound before the copy is asked for
        await drop_sync_queue(self._sync_channel, self.topology, old.name)
        await self._load_copy()
        await self.ctx.dcs.clear_behind(self.ctx.worker_id)
        self.behind = False
        await self._join_reads()

    async def _reload(self, why: str) -> None:
        log.warning("%s: reloading a copy", why)
        await self.leave_reads()
        await self._load_copy()
        await self._join_reads()

    async def _apply_log(self) -> None:
        while True:
            incoming = await self._inbox.get()
            if incoming is RESYNC:
                await self._reload("reconnected to the broker")
                continue
            if incoming is FRESH_QUEUE:
                await self._reload_into_a_fresh_queue()
                continue
            try:
                batch = decode_sync_queue(incoming.body)
            except BadMessage as exc:
                log.warning("a message on our sync queue set aside: %s", exc)
                await dead_letter(self._sync_channel, self.topology.names["dead"], incoming.body,
                                  f"sync queue: {exc}", self.ctx.worker_id)
                await settle(incoming)
                continue
            if isinstance(batch, Marker):
                await settle(incoming)
                if self._marker is not None and not self._marker.done():
                    self._marker.set_result(None)
                continue
            decision = judge(batch, self.applied, self._stream_epoch)
            if decision.verdict is Verdict.APPLY:
                try:
                    with self.ctx.must_finish(self.ctx.settings.db_deadline_s, "applying a batch"):
                        await apply_entries(self.ctx.store, decision.entries, decision.epoch)
                except psycopg.Error as exc:
                    verdict = judge_error(exc)
                    if verdict.trouble:
                        raise Fatal(f"applying the log: {verdict.sentence}") from exc
                    await self._reload(f"a log entry was refused ({verdict.sentence})")
                    await settle(incoming)
                    continue
                self._stream_epoch = decision.epoch
                position = decision.entries[-1].position
                self.ctx.log.moved_to(position, decision.epoch)
                self.waiters.advance(position, decision.epoch)
            elif decision.verdict is Verdict.RESNAPSHOT:
                await self._reload(decision.reason)
            else:
                self._stream_epoch = max(self._stream_epoch, decision.epoch)
            await settle(incoming)

    # --- reads ---------------------------------------------------------------------------------

    async def _join_reads(self) -> None:
        if self._read_tag is None:
            self._read_tag = await self._read_queue.consume(self._on_read)
            log.info("serving reads from log position %s", self.applied)

    async def leave_reads(self) -> None:
        """Take no new reads, and finish those in flight; reads delivered but not started go
        back to readQ for the other slaves."""
        tag, self._read_tag = self._read_tag, None
        if tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._read_queue.cancel(tag, nowait=False), 5)
        await asyncio.gather(*self._reads_in_flight, return_exceptions=True)

    async def _on_read(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._serve_read(incoming))
        self._reads_in_flight.add(task)
        task.add_done_callback(self._reads_in_flight.discard)

    async def _serve_read(self, incoming: AbstractIncomingMessage) -> None:
        """One message, one or more reads: all wait for the log position (and epoch) the
        orchestrator had acknowledged when it sent them, then each is answered."""
        try:
            batch = decode_read_queue(incoming.body)
        except BadMessage as exc:
            await dead_letter(self._reply_channel, self.topology.names["dead"], incoming.body,
                              f"readQ: {exc}", self.ctx.worker_id)
            await reply(self._reply_channel, incoming,
                        error_reply(400, f"The message is not a read: {exc}."))
            await settle(incoming)
            return
        answer = await self._answer_batch(batch)
        await reply(self._reply_channel, incoming, answer)
        await settle(incoming)

    async def _answer_batch(self, batch: ReadBatch) -> dict[str, Any]:
        if not await self.waiters.wait_for(batch.min_position, batch.min_epoch,
                                           self.ctx.settings.read_wait_s):
            return error_reply(
                503, f"this slave is behind (at {self.waiters.epoch}/{self.applied}, the read "
                     f"needs {batch.min_epoch}/{batch.min_position}); try another",
                retry=True)
        answers = await asyncio.gather(*(self._answer(read) for read in batch.reads))
        self.reads_served += len(answers)
        return {"answers": answers}

    async def _answer(self, read: dict[str, Any]) -> dict[str, Any]:
        try:
            request = parse_read({"queries": read.get("queries")})
        except BadRequest as exc:
            return error_reply(400, str(exc))
        try:
            return {"ok": True, "results": await asyncio.wait_for(
                self._query(list(request.queries)), self.ctx.settings.read_wait_s)}
        except TimeoutError:
            return error_reply(503, "this slave's database did not answer in time; retry",
                               retry=True)
        except (psycopg.Error, psycopg.errors.Error) as exc:
            verdict = judge_error(exc)
            return error_reply(verdict.status, verdict.sentence, retry=verdict.trouble)
        except Exception as exc:  # noqa: BLE001 - the pool timing out, and the like
            verdict = judge_error(exc)
            return error_reply(verdict.status, verdict.sentence, retry=verdict.trouble)

    async def _query(self, queries: list[Query]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await Store(conn).query(queries)

    # --- leaving the role ----------------------------------------------------------------------

    async def drain(self) -> None:
        """Apply everything already in our sync queue: a note to ourselves marks its end."""
        self._marker = asyncio.get_running_loop().create_future()
        await self._sync_channel.default_exchange.publish(
            message({"v": PROTOCOL_VERSION, "kind": KIND_MARKER}),
            routing_key=self._sync_queue.name)
        try:
            await asyncio.wait_for(self._marker, DRAIN_TIMEOUT_S)
        except TimeoutError:
            raise Fatal("the sync queue could not be drained; another slave must take over") \
                from None

    async def stop(self) -> None:
        self.ctx.connection.close_callbacks.discard(self._on_broker_lost)
        self.ctx.connection.reconnect_callbacks.discard(self._on_broker_back)
        await self.leave_reads()
        if self._apply_task is not None:
            self.ctx.stopping = True
            self._apply_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._apply_task
        await drop_sync_queue(self._sync_channel, self.topology, self._sync_queue.name)
        if self.ctx.quorum:
            with contextlib.suppress(Exception):
                await self.ctx.dcs.forget_sync_queue(self.ctx.worker_id)
        with contextlib.suppress(Exception):
            await self._sync_channel.close()
        with contextlib.suppress(Exception):
            await self._read_channel.close()
        with contextlib.suppress(Exception):
            await self._pool.close()
