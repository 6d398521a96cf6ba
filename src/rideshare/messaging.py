"""The AMQP topology both ends agree on, connections to one broker node or several, and the small
helpers around them.

On a RabbitMQ cluster (``RIDESHARE_QUORUM_QUEUES``) writeQ, readQ, deadQ and the slaves' sync
queues are quorum queues: every message is replicated with Raft, and a publisher confirm means a
majority of the nodes holds it. Quorum queues cannot be exclusive: writeQ gets a single active
consumer instead, and fencing rests on the epoch (docs/architecture.md, "Fencing"); a slave's sync
queue outlives its connection (so a slave that reconnects has lost nothing), and the orchestrator
deletes the sync queues of workers that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from yarl import URL

from rideshare.protocol import queue_names

log = logging.getLogger(__name__)

#: What a publish or an ack raises while the connection is down (it is being restored).
AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, ConnectionError,
    RuntimeError)
#: The same, or a send given up after its bound.
SEND_ERRORS: tuple[type[BaseException], ...] = (*AMQP_ERRORS, TimeoutError)


RECONNECT_INTERVAL_S = 1.0  # a broker back from a restart is found within a second
SEND_TIMEOUT_S = 5.0  # a publish or an ack that takes longer is given up


@dataclass
class Topology:
    write_queue: AbstractQueue
    read_queue: AbstractQueue
    sync_exchange: AbstractExchange
    names: dict[str, str]
    quorum: bool


def uses_quorum_queues(setting: str, urls: list[str]) -> bool:
    """``setting`` is "true", "false" or "auto": quorum queues when there are several broker
    URLs, or one whose host name resolves to several addresses (a cluster behind one name)."""
    if setting.lower() in ("true", "1", "yes"):
        return True
    if setting.lower() in ("false", "0", "no"):
        return False
    if len(urls) > 1:
        return True
    host = URL(urls[0]).host if urls else None
    try:
        found = {a[4][0] for a in socket.getaddrinfo(host, None)} if host else set()
    except OSError:
        return False
    return len(found) > 1


class RoundRobinConnection(aio_pika.RobustConnection):
    """A robust connection over several broker nodes: each (re)connection attempt goes to the
    next node in turn, so the loss of one node moves every client to another within a second."""

    def __init__(self, urls: list[URL], start: int, **kwargs: Any) -> None:
        self._urls, self._turn = urls, start
        super().__init__(urls[start % len(urls)], **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:  # aio-pika's one attempt
        self.url = self._urls[self._turn % len(self._urls)]
        self._turn += 1
        await aio_pika.RobustConnection._RobustConnection__connect_transport(self)  # type: ignore[attr-defined]


async def connect(urls: list[str] | str, name: str,
                  heartbeat_s: int = 2) -> AbstractRobustConnection:
    """A robust connection to the first node that answers: it reconnects (to the next node) and
    restores its channels, queues and consumers. Short heartbeats, so that a silent broker (or a
    silent peer, for the broker) is noticed in seconds."""
    listed = [urls] if isinstance(urls, str) else list(urls)
    made = [make_url(u, heartbeat=heartbeat_s, reconnect_interval=RECONNECT_INTERVAL_S)
            for u in listed]
    last: BaseException | None = None
    for start in range(len(made)):
        connection = RoundRobinConnection(made, start,
                                          client_properties={"connection_name": name})
        try:
            await connection.connect(timeout=15)
            return connection
        except asyncio.CancelledError as exc:  # aiormq's, when a node drops the handshake
            if not cancelled_under_us():
                raise
            last = exc
        except Exception as exc:  # noqa: BLE001 - that node does not answer: the next one
            last = exc
        with contextlib.suppress(Exception):
            await connection.close()
    raise ConnectionError(f"no broker node answered ({listed}): {last!r}")


def queue_arguments(quorum: bool, **extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra} if quorum else dict(extra)


def write_queue_arguments(quorum: bool) -> dict[str, Any] | None:
    """writeQ's: on a cluster, a quorum queue with a single active consumer (the master)."""
    return queue_arguments(True, **{"x-single-active-consumer": True}) if quorum else None


async def declare(channel: AbstractChannel, prefix: str, quorum: bool = False,
                  dead_letter_max_length: int = 10_000) -> Topology:
    names = queue_names(prefix)
    write_queue = await channel.declare_queue(names["write"], durable=True,
                                              arguments=write_queue_arguments(quorum))
    read_queue = await channel.declare_queue(names["read"], durable=True,
                                             arguments=queue_arguments(quorum) or None)
    sync_exchange = await channel.declare_exchange(
        names["sync"], aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_queue(names["dead"], durable=True, arguments=queue_arguments(
        quorum, **{"x-max-length": dead_letter_max_length, "x-overflow": "drop-head"}))
    return Topology(write_queue, read_queue, sync_exchange, names, quorum)


def sync_queue_name(names: dict[str, str], worker_id: str, generation: int = 0) -> str:
    return f"{names['sync']}.{worker_id}" + (f".{generation}" if generation else "")


async def unbind_sync_queue(channel: AbstractChannel, topology: Topology, name: str) -> None:
    """Take a sync queue off the fanout, so that it no longer refuses the master's batches."""
    queue = await channel.get_queue(name, ensure=False)
    await asyncio.wait_for(queue.unbind(topology.names["sync"]), SEND_TIMEOUT_S)


async def drop_sync_queue(channel: AbstractChannel, topology: Topology, name: str) -> None:
    """Unbind, then delete: a quorum queue deleted while one of its nodes is down may linger,
    and a lingering queue still bound to the fanout would refuse every batch."""
    try:
        await unbind_sync_queue(channel, topology, name)
    except SEND_ERRORS as exc:
        log.warning("unbinding the sync queue %s: %r", name, exc)
    try:
        queue = await channel.get_queue(name, ensure=False)
        await asyncio.wait_for(queue.delete(if_unused=False, if_empty=False), SEND_TIMEOUT_S)
    except SEND_ERRORS as exc:
        log.warning("deleting the sync queue %s: %r", name, exc)


async def declare_sync_queue(channel: AbstractChannel, topology: Topology, worker_id: str,
                             max_length: int, generation: int = 0) -> AbstractQueue:
    """A slave's sync queue, bound to the fanout. Bounded: beyond ``max_length`` batches the
    oldest go (never reject-publish, which would refuse the master's fanout publish to every
    slave); the slave then finds a gap in the log and reloads a copy. On a single node it is
    exclusive (it dies with the slave's connection); on a cluster, a durable quorum queue that the
    orchestrator deletes once its slave is gone."""
    bound: dict[str, Any] = {"x-max-length": max_length, "x-overflow": "drop-head"}
    name = sync_queue_name(topology.names, worker_id, generation)
    if topology.quorum:
        queue = await channel.declare_queue(name, durable=True,
                                            arguments=queue_arguments(True, **bound))
    else:
        queue = await channel.declare_queue(name, exclusive=True, arguments=bound)
    await queue.bind(topology.sync_exchange)
    return queue


def message(body: dict[str, Any], *, persistent: bool = False,
            **properties: Any) -> aio_pika.Message:
    mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    return aio_pika.Message(orjson.dumps(body), delivery_mode=mode,
                            content_type="application/json", **properties)


def cancelled_under_us() -> bool:
    """True when a CancelledError did not come for our task: aio-pika cancels a publish's or an
    ack's future when its connection closes, and that must count as a failed send, not end the
    task that sent it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


async def reply(channel: AbstractChannel, request: AbstractIncomingMessage,
                body: dict[str, Any]) -> None:
    """Answer a request on its ``reply_to`` queue with its correlation id."""
    if not request.reply_to:
        return
    try:
        # Bounded as a whole: while a robust channel is being restored, publishing waits for it.
        await asyncio.wait_for(channel.default_exchange.publish(
            message(body, correlation_id=request.correlation_id), routing_key=request.reply_to,
            mandatory=False), SEND_TIMEOUT_S)
    except SEND_ERRORS as exc:  # the asker times out, retries with the same id
        log.warning("a reply was lost with the connection: %r", exc)
    except asyncio.CancelledError:
        if not cancelled_under_us():
            raise
        log.warning("a reply was lost with the connection (its send was cancelled)")


async def settle(incoming: AbstractIncomingMessage, multiple: bool = False) -> None:
    """Ack; if the channel is gone, the broker redelivers and the write id makes that safe."""
    try:
        await asyncio.wait_for(incoming.ack(multiple=multiple), SEND_TIMEOUT_S)
    except SEND_ERRORS as exc:
        log.warning("an ack was lost with the connection: %r", exc)
    except asyncio.CancelledError:
        if not cancelled_under_us():
            raise
        log.warning("an ack was lost with the connection (it was cancelled)")
