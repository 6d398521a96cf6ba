"""How a slave judges each sync message: apply, skip, or reload a snapshot."""

from __future__ import annotations

import asyncio

from rideshare.worker.replication import PositionWaiters, Verdict, judge


def batch(epoch: int, *positions: int) -> dict:
    return {"epoch": epoch, "entries": [{"position": p, "id": str(p), "ops": [], "result": {}}
                                        for p in positions]}


def test_the_next_positions_are_applied():
    d = judge(batch(1, 5, 6), applied=4, stream_epoch=1)
    assert d.verdict is Verdict.APPLY and [e["position"] for e in d.entries] == [5, 6]


def test_positions_already_applied_are_skipped_and_overlaps_trimmed():
    assert judge(batch(1, 3, 4), applied=4, stream_epoch=1).verdict is Verdict.SKIP
    d = judge(batch(1, 4, 5), applied=4, stream_epoch=1)
    assert d.verdict is Verdict.APPLY and [e["position"] for e in d.entries] == [5]


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
        waiters = PositionWaiters()
        waiters.advance(3)
        assert await waiters.wait_for(3, 0.01)
        task = asyncio.create_task(waiters.wait_for(5, 5))
        await asyncio.sleep(0)
        waiters.advance(5)
        return await task, await waiters.wait_for(9, 0.05)

    assert asyncio.run(scenario()) == (True, False)


def test_old_write_ids_are_forgotten_at_the_same_positions_everywhere():
    import asyncio as aio

    from rideshare.worker.store import PRUNE_EVERY, Store

    class Recorder:
        def __init__(self):
            self.statements = []

        async def execute(self, sql, params=()):
            self.statements.append(params)

    async def scenario():
        conn = Recorder()
        store = Store(conn)  # type: ignore[arg-type]
        await store.forget_old_write_ids(PRUNE_EVERY - 5, PRUNE_EVERY - 1, keep=100)
        await store.forget_old_write_ids(PRUNE_EVERY - 1, PRUNE_EVERY + 3, keep=100)
        await store.forget_old_write_ids(PRUNE_EVERY - 1, PRUNE_EVERY + 3, keep=0)
        return conn.statements

    assert aio.run(scenario()) == [(PRUNE_EVERY + 3 - 100,)]
