"""The AMQP topology both ends agree on, and the small helpers around it."""

from __future__ import annotations

import asyncio
import logging
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

from rideshare.protocol import queue_names

log = logging.getLogger(__name__)

#: What a publish or an ack raises while the connection is down (it is being restored).
AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, ConnectionError,
    RuntimeError)


RECONNECT_INTERVAL_S = 1.0  # a broker back from a restart is found within a second
SEND_TIMEOUT_S = 5.0  # a publish or an ack that takes longer is given up


@dataclass
class Topology:
    write_queue: AbstractQueue
    read_queue: AbstractQueue
    sync_exchange: AbstractExchange
    names: dict[str, str]


async def connect(url: str, name: str, heartbeat_s: int = 2) -> AbstractRobustConnection:
    """A robust connection: it reconnects and restores its channels, queues and consumers. Short
    heartbeats, so that a silent broker (or a silent peer, for the broker) is noticed in seconds."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name},
                                         timeout=15, heartbeat=heartbeat_s,
                                         reconnect_interval=RECONNECT_INTERVAL_S)


async def declare(channel: AbstractChannel, prefix: str,
                  dead_letter_max_length: int = 10_000) -> Topology:
    names = queue_names(prefix)
    write_queue = await channel.declare_queue(names["write"], durable=True)
    read_queue = await channel.declare_queue(names["read"], durable=True)
    sync_exchange = await channel.declare_exchange(
        names["sync"], aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_queue(names["dead"], durable=True, arguments={
        "x-max-length": dead_letter_max_length, "x-overflow": "drop-head"})
    return Topology(write_queue, read_queue, sync_exchange, names)


def sync_queue_arguments(max_length: int) -> dict[str, Any]:
    """A slave's sync queue is bounded: beyond ``max_length`` batches the oldest go (never
    reject-publish, which would refuse the master's fanout publish to every slave); the slave
    then finds a gap in the log and reloads a copy."""
    return {"x-max-length": max_length, "x-overflow": "drop-head"}


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
    except (*AMQP_ERRORS, TimeoutError) as exc:  # the asker times out, retries with the same id
        log.warning("a reply was lost with the connection: %r", exc)
    except asyncio.CancelledError:
        if not cancelled_under_us():
            raise
        log.warning("a reply was lost with the connection (its send was cancelled)")


async def settle(incoming: AbstractIncomingMessage, multiple: bool = False) -> None:
    """Ack; if the channel is gone, the broker redelivers and the write id makes that safe."""
    try:
        await asyncio.wait_for(incoming.ack(multiple=multiple), SEND_TIMEOUT_S)
    except (*AMQP_ERRORS, TimeoutError) as exc:
        log.warning("an ack was lost with the connection: %r", exc)
    except asyncio.CancelledError:
        if not cancelled_under_us():
            raise
        log.warning("an ack was lost with the connection (it was cancelled)")
