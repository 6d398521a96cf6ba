"""How a slave follows the master: the log applied strictly in order, judged by epoch and position.

``judge`` and ``forget_decision`` are pure decisions; ``apply_entries`` and ``LogWaiters`` are the
thin I/O and bookkeeping around them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from rideshare.messages import Entry, SyncBatch
from rideshare.worker.store import Store


class Verdict(StrEnum):
    APPLY = "apply"
    SKIP = "skip"  # already applied, or from a deposed master
    RESNAPSHOT = "resnapshot"  # a gap or a divergence: only a fresh copy makes it right


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    entries: list[Entry] = field(default_factory=list)
    epoch: int = 0
    reason: str = ""


def judge(batch: SyncBatch, applied: int, stream_epoch: int) -> Decision:
    """What to do with one sync batch, given the position and epoch applied so far.

    Batches of an older epoch than one already seen come from a deposed master. A new epoch must
    start after what we hold, or we hold entries the new master never saw (a deposed master's,
    never acknowledged): only a fresh copy removes them.
    """
    epoch, entries = batch.epoch, batch.entries
    if epoch < stream_epoch:
        return Decision(Verdict.SKIP, reason=f"epoch {epoch} is older than {stream_epoch}")
    if epoch > stream_epoch and entries[0].position <= applied:
        return Decision(Verdict.RESNAPSHOT, epoch=epoch,
                        reason=f"epoch {epoch} restarts at {entries[0].position}, "
                               f"we hold {applied}")
    fresh = [e for e in entries if e.position > applied]
    if not fresh:
        return Decision(Verdict.SKIP, epoch=max(epoch, stream_epoch), reason="already applied")
    if fresh[0].position != applied + 1:
        return Decision(Verdict.RESNAPSHOT, epoch=epoch,
                        reason=f"gap: next is {fresh[0].position}, we hold {applied}")
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


async def apply_entries(store: Store, entries: list[Entry], epoch: int) -> None:
    """Apply resolved log entries in one transaction (a slave's group commit)."""
    async with store.conn.transaction():
        for entry in entries:
            if entry.ops:  # the master applied it, so it applies here: no savepoint needed
                await store.apply(entry.ops, entry.position, resolve=False, savepoint=False)
        await store.record_log([e.raw for e in entries], epoch)
        for entry in entries:
            if "forget" in entry.raw:
                await store.forget_write_ids(entry.raw["forget"])


class LogWaiters:
    """The log applied so far, as (epoch, position), and reads waiting (bounded) for enough of it.

    A read needs the position the orchestrator had acknowledged when it sent it, in the epoch of
    that acknowledgement or a later one: a slave that applied a deposed master's entries up to that
    position holds the wrong ones, and must wait for the new master's (which come after a fresh
    copy, see ``judge``).
    """

    def __init__(self) -> None:
        self.applied = 0
        self.epoch = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    def has(self, position: int, epoch: int) -> bool:
        return self.applied >= position and self.epoch >= epoch

    def advance(self, position: int, epoch: int) -> None:
        """The log now holds ``position``, and its last entry was written in ``epoch``."""
        self.applied, self.epoch = position, epoch
        still = []
        for wanted, wanted_epoch, future in self._waiters:
            if self.has(wanted, wanted_epoch):
                if not future.done():
                    future.set_result(None)
            elif not future.done():
                still.append((wanted, wanted_epoch, future))
        self._waiters = still

    async def wait_for(self, position: int, epoch: int, timeout_s: float) -> bool:
        if self.has(position, epoch):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, epoch, future))
        try:
            await asyncio.wait_for(future, timeout_s)
            return True
        except TimeoutError:
            return False
