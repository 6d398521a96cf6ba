"""The orchestrator's side of the queues: publish a request, await its reply.

One robust AMQP connection for the whole process; writes are published persistent; replies
for every request in flight arrive on ``responseQ`` and are matched by
correlation id, so thousands of requests can wait at once without a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from rideshare.messaging import Topology, connect, declare, drop_sync_queue, message
from rideshare.protocol import (
    KIND_POSITION,
    KIND_WRITES,
    PROTOCOL_VERSION,
    ReadRequest,
    WriteRequest,
    operation_json,
    query_json,
)

log = logging.getLogger(__name__)


class RpcTimeout(Exception):
    """No worker answered in time."""


class RpcUnavailable(Exception):
    """The broker connection is down (it is being restored)."""


class StaleEpoch(Exception):
    """The reply came from a master an election has since deposed."""


MAX_BATCH = 64
CONFIRM_WAIT_S = 1.0  # on a cluster: an unconfirmed request is sent again after this


class Batcher:
    """Requests made in the same turn of the event loop travel as one message, so that under load
    the broker, the workers and this process handle one message for many requests; a lone request
    goes at once, alone."""

    def __init__(self, send: Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]],
                 max_batch: int = MAX_BATCH) -> None:
        self._send = send
        self._max = max_batch
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting.append((item, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        while self._waiting:
            chunk, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
            task = asyncio.create_task(self._send_chunk(chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_chunk(self, chunk: list[tuple[dict[str, Any],
                                                  asyncio.Future[dict[str, Any]]]]) -> None:
        try:
            answers = await self._send([item for item, _ in chunk])
            if len(answers) != len(chunk):
                raise RpcUnavailable(f"{len(answers)} answers came for {len(chunk)} requests")
        except Exception as exc:  # every request of the message fails the same way
            for _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(chunk, answers, strict=True):
            if not future.done():
                future.set_result(answer)


class Rpc:
    def __init__(self, amqp_urls: list[str], queue_prefix: str, write_timeout_s: float,
                 read_timeout_s: float, quorum: bool = False,
                 dead_letter_max_length: int = 10_000) -> None:
        self.quorum, self._dead_letter_max_length = quorum, dead_letter_max_length
        self._urls = amqp_urls
        self._prefix = queue_prefix
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._id_prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        # The newest (epoch, log position) of any acknowledged write: every read needs it.
        self.acked_epoch = 0
        self.acked_position = 0
        self._fence = 0  # a write answered in an older epoch than this is never acknowledged
        self.connection: AbstractRobustConnection | None = None
        self._position_known = asyncio.Event()
        self._writes = Batcher(self._send_writes)
        self._reads = Batcher(self._send_reads)
        self.write_timeout_s = write_timeout_s
        self.read_timeout_s = read_timeout_s

    def fence(self, epoch: int) -> None:
        """From now on, refuse answers of masters of epochs before ``epoch`` (called with the
        next epoch before an election's compare-and-set, so that no reply of the deposed master
        is acknowledged while ZooKeeper is being told)."""
        self._fence = max(self._fence, epoch)

    @property
    def fenced_below(self) -> int:
        return self._fence

    def _acknowledged(self, epoch: int, position: int) -> None:
        if (epoch, position) > (self.acked_epoch, self.acked_position):
            self.acked_epoch, self.acked_position = epoch, position

    async def start(self) -> None:
        self.connection = await connect(self._urls, f"{self._prefix}orchestrator")
        self._channel: AbstractChannel = await self.connection.channel(
            publisher_confirms=False)
        self.topology: Topology = await declare(self._channel, self._prefix, self.quorum,
                                                self._dead_letter_max_length)
        # On a cluster every request is published confirmed and mandatory on a channel of its
        # own (one that declares nothing, so nothing of it waits on a queue's election when it
        # is restored): a publish the broker drops while a quorum queue changes leader is sent
        # again, instead of costing the caller a timeout.
        self._reopening = asyncio.Lock()
        self._confirmed: AbstractChannel | None = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True) if self.quorum else None
        self._reply_channel = await self.connection.channel()
        replies = await self._reply_channel.declare_queue(
            self.topology.names["response"], durable=False, auto_delete=False)
        await replies.purge()  # replies meant for an earlier orchestrator process
        await replies.consume(self._on_reply, no_ack=True)

    async def drop_sync_queue(self, name: str) -> None:
        """Unbind and delete a gone slave's sync queue; gone already is fine."""
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            await drop_sync_queue(channel, self.topology, name)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def stop(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    def _on_reply(self, incoming: AbstractIncomingMessage) -> None:
        future = self._pending.pop(incoming.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(orjson.loads(incoming.body))

    async def _call(self, routing_key: str, body: dict[str, Any], timeout_s: float,
                    persistent: bool) -> dict[str, Any]:
        correlation_id = self._id_prefix + str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            # On a single node no publisher confirm is awaited: a write is acknowledged only once
            # the master has committed it and the slaves' queues hold it, which the master's own
            # confirmed publish to syncQ proves. A message the broker loses is a timeout (503),
            # never a lost acknowledged write.
            async def publish_then_wait() -> dict[str, Any]:
                request = message(body, persistent=persistent, correlation_id=correlation_id,
                                  reply_to=self.topology.names["response"], expiration=timeout_s)
                if self._confirmed is None:
                    await self._channel.default_exchange.publish(request, routing_key=routing_key)
                else:
                    await self._publish_confirmed(request, routing_key, future)
                return await future

            # One bound for both: while the connection is restored, publishing waits for it.
            return await asyncio.wait_for(publish_then_wait(), timeout_s)
        except TimeoutError as exc:
            raise RpcTimeout from exc
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException,
                ConnectionError, RuntimeError) as exc:
            raise RpcUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def _publish_confirmed(self, request: aio_pika.Message, routing_key: str,
                                 answered: asyncio.Future[dict[str, Any]]) -> None:
        """Publish until the broker confirms it (the caller's deadline bounds it): a nack, a
        return or a confirm that does not come within a second means the queue could not take
        it now (a leader being elected), so it goes again; the write id makes a second copy of a
        write harmless, and a reply that comes first ends it."""
        while not answered.done():
            channel = self._confirmed
            assert channel is not None
            try:
                await asyncio.wait_for(channel.default_exchange.publish(
                    request, routing_key=routing_key, mandatory=True), CONFIRM_WAIT_S)
                return
            except Exception as exc:  # noqa: BLE001 - a nack, a return, no confirm, a channel
                # closed under the publish (aiormq fails its confirm with a bare Exception)
                log.warning("%s did not take a request (%r); sending it again on a fresh "
                            "channel", routing_key, exc)
                await self._fresh_confirmed_channel(channel)
                await asyncio.sleep(0.2)

    async def _fresh_confirmed_channel(self, refused: AbstractChannel) -> None:
        """A channel whose quorum queues lost their leader may go on refusing every publish
        even once a new leader serves (RabbitMQ 3.10 was seen doing so after a node was killed),
        while a new channel is served at once: so the channel that was refused is replaced."""
        async with self._reopening:
            if self._confirmed is not refused or self.connection is None:
                return  # another request replaced it already
            with contextlib.suppress(Exception):
                await asyncio.wait_for(refused.close(), 2)
            try:
                self._confirmed = await self.connection.channel(publisher_confirms=True,
                                                                on_return_raises=True)
            except Exception as exc:  # noqa: BLE001 - the connection is being restored: later
                log.warning("no fresh channel yet (%r)", exc)

    async def write(self, request: WriteRequest) -> dict[str, Any]:
        answer = await self._writes.submit({
            "id": request.write_id or f"w-{uuid.uuid4().hex}",
            "ops": [operation_json(op) for op in request.ops]})
        if answer.get("epoch", 0) < self._fence:
            raise StaleEpoch
        if "position" in answer:
            self._acknowledged(answer.get("epoch", 0), answer["position"])
        return answer

    async def _send_writes(self, writes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"v": PROTOCOL_VERSION, "kind": KIND_WRITES, "writes": writes}
        reply = await self._call(self.topology.names["write"], body, self.write_timeout_s,
                                 persistent=True)
        if "answers" not in reply:  # the master refused the whole message
            return [reply] * len(writes)
        answers: list[dict[str, Any]] = reply["answers"]
        return answers

    async def learn_position(self) -> None:
        """Start from the master's log position, asked through writeQ so that the answer comes
        after every write it committed: an orchestrator that restarts must not send reads that
        miss a write its predecessor acknowledged. Retried until a master answers."""
        while not self._position_known.is_set():
            try:
                answer = await self._call(self.topology.names["write"],
                                          {"v": PROTOCOL_VERSION, "kind": KIND_POSITION},
                                          self.write_timeout_s, persistent=False)
            except (RpcTimeout, RpcUnavailable) as exc:
                log.warning("no master told its log position yet (%r); asking again", exc)
                await asyncio.sleep(0.2)
                continue
            self._acknowledged(answer.get("epoch", 0), answer["position"])
            self._position_known.set()

    async def read(self, request: ReadRequest) -> dict[str, Any]:
        """A read answered by a slave; one a slave refuses because it cannot serve it now (it is
        behind, reloading, or its database is in trouble) goes to readQ again, for another
        slave, while the time allowed lasts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        if not self._position_known.is_set():  # just started: wait (bounded) for the position
            try:
                await asyncio.wait_for(self._position_known.wait(), self.read_timeout_s)
            except TimeoutError as exc:
                raise RpcTimeout from exc
        item = {"queries": [query_json(q) for q in request.queries]}
        while True:
            answer = await self._reads.submit(item)
            if answer.get("ok", True) or not answer.get("retry") or loop.time() >= deadline:
                return answer
            await asyncio.sleep(0.02)

    async def _send_reads(self, reads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"v": PROTOCOL_VERSION, "reads": reads, "min_position": self.acked_position,
                "min_epoch": self.acked_epoch}
        reply = await self._call(self.topology.names["read"], body, self.read_timeout_s,
                                 persistent=False)
        if "answers" not in reply:  # the slave refused the whole message (it is behind)
            return [reply] * len(reads)
        answers: list[dict[str, Any]] = reply["answers"]
        return answers
