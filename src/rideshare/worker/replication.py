"""How a slave follows the master: snapshots, and the log applied strictly in order."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from rideshare.messaging import message
from rideshare.protocol import KIND_SNAPSHOT, PROTOCOL_VERSION
from rideshare.worker.store import Conflict, Store

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    APPLY = "apply"
    SKIP = "skip"  # already applied, or from a deposed master
    RESNAPSHOT = "resnapshot"  # a gap or a divergence: only a fresh snapshot makes it right


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    entries: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    reason: str = ""


def judge(batch: dict[str, Any], applied: int, stream_epoch: int) -> Decision:
    """What to do with one sync message, given the position and epoch applied so far.

    Messages of an older epoch than one already seen in the stream come from a deposed master.
    A new epoch must start after what we hold, or we hold entries the new master never saw.
    """
    epoch = batch["epoch"]
    entries = batch["entries"]
    if epoch < stream_epoch:
        return Decision(Verdict.SKIP, reason=f"epoch {epoch} is older than {stream_epoch}")
    if epoch > stream_epoch and entries and entries[0]["position"] <= applied:
        return Decision(Verdict.RESNAPSHOT, epoch=epoch,
                        reason=f"epoch {epoch} restarts at {entries[0]['position']}, "
                               f"we hold {applied}")
    fresh = [e for e in entries if e["position"] > applied]
    if not fresh:
        return Decision(Verdict.SKIP, epoch=max(epoch, stream_epoch), reason="already applied")
    if fresh[0]["position"] != applied + 1:
        return Decision(Verdict.RESNAPSHOT, epoch=epoch,
                        reason=f"gap: next is {fresh[0]['position']}, we hold {applied}")
    return Decision(Verdict.APPLY, fresh, epoch)


async def apply_entries(store: Store, entries: list[dict[str, Any]], epoch: int,
                        applied: int = 0, write_ids_kept: int = 0) -> None:
    """Apply resolved log entries in one transaction (a slave's group commit)."""
    async with store.conn.transaction():
        for entry in entries:
            if entry["ops"]:  # the master applied it, so it applies here: no savepoint needed
                await store.apply(entry["ops"], entry["position"], resolve=False, savepoint=False)
        await store.record_log(entries, epoch)
        await store.forget_old_write_ids(applied, entries[-1]["position"], write_ids_kept)


class PositionWaiters:
    """Lets reads wait, bounded, until the log has been applied up to a position."""

    def __init__(self) -> None:
        self.applied = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def advance(self, position: int) -> None:
        self.applied = position
        still = []
        for wanted, future in self._waiters:
            if wanted <= position:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self._waiters = still

    async def wait_for(self, position: int, timeout_s: float) -> bool:
        if position <= self.applied:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        try:
            await asyncio.wait_for(future, timeout_s)
            return True
        except TimeoutError:
            return False


async def request_snapshot(
    connection: AbstractRobustConnection, write_queue: str, timeout_s: float
) -> dict[str, Any]:
    """Ask the master, through writeQ (so it is ordered with the writes), for a snapshot."""
    channel = await connection.channel()
    try:
        answers = await channel.declare_queue(exclusive=True, auto_delete=True)
        correlation_id = uuid.uuid4().hex
        got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_answer(incoming: AbstractIncomingMessage) -> None:
            if incoming.correlation_id == correlation_id and not got.done():
                got.set_result(orjson.loads(incoming.body))

        await answers.consume(on_answer, no_ack=True)
        await channel.default_exchange.publish(
            message({"v": PROTOCOL_VERSION, "kind": KIND_SNAPSHOT}, persistent=True,
                    reply_to=answers.name, correlation_id=correlation_id),
            routing_key=write_queue)
        return await asyncio.wait_for(got, timeout_s)
    finally:
        await channel.close()


__all__ = ["Conflict", "Decision", "PositionWaiters", "Verdict", "apply_entries", "judge",
           "request_snapshot"]
