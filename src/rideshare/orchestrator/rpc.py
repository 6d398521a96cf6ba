"""The orchestrator's side of the queues: publish a request, await its reply.

One robust AMQP connection for the whole process; writes are published persistent; replies
for every request in flight arrive on ``responseQ`` and are matched by
correlation id, so thousands of requests can wait at once without a thread each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from rideshare.messaging import Topology, connect, declare, message
from rideshare.protocol import (
    KIND_WRITE,
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


class Rpc:
    def __init__(self, amqp_url: str, queue_prefix: str) -> None:
        self._url = amqp_url
        self._prefix = queue_prefix
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._id_prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        self.acked_position = 0  # the highest log position of any acknowledged write
        self.epoch = 0  # the newest election epoch we know of (kept by the cluster view)
        self.connection: AbstractRobustConnection | None = None

    async def start(self) -> None:
        self.connection = await connect(self._url, f"{self._prefix}orchestrator")
        self._fast_channel: AbstractChannel = await self.connection.channel(
            publisher_confirms=False)
        self.topology: Topology = await declare(self._fast_channel, self._prefix)
        self._reply_channel = await self.connection.channel()
        replies = await self._reply_channel.declare_queue(
            self.topology.names["response"], durable=False, auto_delete=False)
        await replies.purge()  # replies meant for an earlier orchestrator process
        await replies.consume(self._on_reply, no_ack=True)

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
            # No publisher confirm is awaited here: a write is acknowledged only once the master
            # has committed it and the slaves' queues hold it, which the master's own confirmed
            # publish to syncQ proves. A message the broker loses is a timeout (503), never a
            # lost acknowledged write.
            await self._fast_channel.default_exchange.publish(
                message(body, persistent=persistent, correlation_id=correlation_id,
                        reply_to=self.topology.names["response"],
                        expiration=timeout_s),
                routing_key=routing_key, timeout=timeout_s)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError as exc:
            raise RpcTimeout from exc
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException,
                ConnectionError, RuntimeError) as exc:
            raise RpcUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def write(self, request: WriteRequest, timeout_s: float) -> dict[str, Any]:
        body = {"v": PROTOCOL_VERSION, "kind": KIND_WRITE,
                "id": request.write_id or f"w-{uuid.uuid4().hex}",
                "ops": [operation_json(op) for op in request.ops]}
        answer = await self._call(self.topology.names["write"], body, timeout_s, persistent=True)
        if answer.get("epoch", 0) < self.epoch:
            raise StaleEpoch
        if "position" in answer:
            self.acked_position = max(self.acked_position, answer["position"])
        return answer

    async def read(self, request: ReadRequest, timeout_s: float) -> dict[str, Any]:
        body = {"v": PROTOCOL_VERSION, "queries": [query_json(q) for q in request.queries],
                "min_position": self.acked_position}
        return await self._call(self.topology.names["read"], body, timeout_s, persistent=False)
