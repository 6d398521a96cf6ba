"""How a slave judges each sync message: apply, skip, or reload a snapshot."""

from __future__ import annotations

import asyncio

from rideshare.messages import Entry, SyncBatch
from rideshare.worker.replication import (
    FORGET_EVERY_POSITIONS,
    FORGET_EVERY_S,
    LogWaiters,
    Verdict,
    forget_decision,
    judge,
)


def batch(epoch: int, *positions: int) -> SyncBatch:
    return SyncBatch(epoch, tuple(Entry(p, str(p), [], {}, {}) for p in positions))


def test_the_next_positions_are_applied():
    d = judge(batch(1, 5, 6), applied=4, stream_epoch=1)
    assert d.verdict is Verdict.APPLY and [e.position for e in d.entries] == [5, 6]


def test_positions_already_applied_are_skipped_and_overlaps_trimmed():
    assert judge(batch(1, 3, 4), applied=4, stream_epoch=1).verdict is Verdict.SKIP
    d = judge(batch(1, 4, 5), applied=4, stream_epoch=1)
    assert d.verdict is Verdict.APPLY and [e.position for e in d.entries] == [5]


def test_a_gap_means_a_fresh_snapshot():
    assert judge(batch(1, 7), applied=4, stream_epoch=1).verdict is Verdict.RESNAPSHOT


def test_a_deposed_master_is_ignored_once_a_newer_epoch_was_seen():
    assert judge(batch(1, 5), applied=4, stream_epoch=2).verdict is Verdict.SKIP


def test_a_new_epoch_that_restarts_below_what_we_hold_means_we_diverged():
    assert judge(batch(2, 4), applied=4, stream_epoch=1).verdict is Verdict.RESNAPSHOT
    d = judge(batch(2, 5), applied=4, stream_epoch=1)
    assert d.verdict is Verdict.APPLY and d.epoch == 2


def test_reads_wait_for_the_position_they_need_and_give_up_at_the_bound():
    async def scenario() -> tuple[bool, bool]:
        waiters = LogWaiters()
        waiters.advance(3, 1)
        assert await waiters.wait_for(3, 1, 0.01)
        task = asyncio.create_task(waiters.wait_for(5, 1, 5))
        await asyncio.sleep(0)
        waiters.advance(5, 1)
        return await task, await waiters.wait_for(9, 1, 0.05)

    assert asyncio.run(scenario()) == (True, False)


def test_a_read_of_a_newer_epoch_is_not_served_from_a_deposed_masters_entries():
    """The slave applied a deposed master's entries up to 7 (epoch 1); a write acknowledged in
    epoch 2 at position 6 is not among them, whatever the positions say."""
    async def scenario() -> tuple[bool, bool]:
        waiters = LogWaiters()
        waiters.advance(7, 1)
        behind = await waiters.wait_for(6, 2, 0.05)
        task = asyncio.create_task(waiters.wait_for(6, 2, 5))
        await asyncio.sleep(0)
        waiters.advance(6, 2)  # a fresh copy of the new master's log
        return behind, await task

    assert asyncio.run(scenario()) == (False, True)


def test_write_ids_are_forgotten_by_count_each_time_the_log_crosses_a_multiple():
    every = FORGET_EVERY_POSITIONS
    keep = 1_000_000
    assert forget_decision(every - 5, every - 1, 1000.0, 990.0, keep, 0) is None
    assert forget_decision(every - 1, every + 3, 1000.0, 990.0, keep, 0) == {
        "upto": every + 3 - keep, "before": 0}
    assert forget_decision(every - 1, every + 3, 1000.0, 990.0, 0, 0) is None, "0: forever"
    # A small bound is kept close: every tenth of it.
    assert forget_decision(18, 19, 1000.0, 990.0, 100, 0) is None
    assert forget_decision(19, 20, 1000.0, 990.0, 100, 0) == {"upto": -80, "before": 0}


def test_write_ids_are_forgotten_by_age_once_a_minute_whatever_the_position():
    assert forget_decision(5, 6, 1000.0, 1000.0 - FORGET_EVERY_S + 1, 100, 3600) is None
    decided = forget_decision(5, 6, 10_000.0, 10_000.0 - FORGET_EVERY_S, 100, 3600)
    assert decided == {"upto": 6 - 100, "before": 10_000 - 3600}
    assert forget_decision(5, 6, 10_000.0, 0.0, 0, 3600) == {"upto": -1, "before": 6400}
