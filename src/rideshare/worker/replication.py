"""How a slave follows the master: snapshots, and the log applied strictly in order."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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


FORGET_EVERY_POSITIONS = 10_000  # at most; a tenth of the count bound when that is smaller
FORGET_EVERY_S = 60.0


def forget_decision(before: int, after: int, now: float, last_forget_at: float, keep: int,
                    max_age_s: float) -> dict[str, int] | None:
    """Which remembered write ids the master forgets after the log moved from ``before`` to
    ``after``: those more than ``keep`` positions old, and those older than ``max_age_s``.

    Decided now and then (each time the log crosses a multiple of ``FORGET_EVERY_POSITIONS``, or
    of a tenth of ``keep`` if that is smaller, or ``FORGET_EVERY_S`` after the last time), and
    carried in the log entry, so that every copy forgets the same ids at the same position.
    None: nothing to decide this time.
    """
    every = max(1, min(FORGET_EVERY_POSITIONS, keep // 10))
    by_count = keep > 0 and before // every != after // every
    by_age = max_age_s > 0 and now - last_forget_at >= FORGET_EVERY_S
    if not (by_count or by_age):
        return None
    return {"upto": after - keep if keep > 0 else -1,
            "before": int(now - max_age_s) if max_age_s > 0 else 0}


async def apply_entries(store: Store, entries: list[dict[str, Any]], epoch: int) -> None:
    """Apply resolved log entries in one transaction (a slave's group commit)."""
    async with store.conn.transaction():
        for entry in entries:
            if entry["ops"]:  # the master applied it, so it applies here: no savepoint needed
                await store.apply(entry["ops"], entry["position"], resolve=False, savepoint=False)
        await store.record_log(entries, epoch)
        for entry in entries:
            if "forget" in entry:
                await store.forget_write_ids(entry["forget"])


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


__all__ = ["Conflict", "Decision", "PositionWaiters", "Verdict", "apply_entries",
           "forget_decision", "judge"]
