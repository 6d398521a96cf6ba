"""The orchestrator refuses a deposed master's answers from before an election's compare-and-set
lands in ZooKeeper, not from when it hears back (the reply could come in between)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rideshare.config import Settings
from rideshare.dcs import Epoch
from rideshare.orchestrator.cluster import Cluster
from rideshare.orchestrator.rpc import Rpc


class SlowCoordinator:
    """The two calls an election makes, with the compare-and-set taking its time."""

    def __init__(self, rpc: Rpc, current: Epoch) -> None:
        self.rpc, self.current = rpc, current
        self.fence_during_cas: int | None = None

    async def epoch(self) -> Epoch:
        return self.current

    async def advance_epoch(self, seen: Epoch, master: str, acked: int = 0) -> Epoch | None:
        self.fence_during_cas = self.rpc.fenced_below
        await asyncio.sleep(0.01)
        self.current = Epoch(seen.number + 1, master, seen.version + 1, acked)
        return self.current


def test_answers_of_the_deposed_master_are_refused_before_the_epoch_changes(tmp_path: Path):
    async def scenario() -> tuple[int | None, int, Epoch]:
        rpc = Rpc("amqp://unused", "t.", 1, 1)
        rpc.fence(4)
        dcs = SlowCoordinator(rpc, Epoch(4, "old", 7))
        cluster = Cluster(Settings(run_dir=tmp_path), dcs, runtime=None, rpc=rpc)  # type: ignore[arg-type]
        cluster.epoch = Epoch(4, "old", 7)
        await cluster._elect("heir")
        return dcs.fence_during_cas, rpc.fenced_below, cluster.epoch

    during, after, epoch = asyncio.run(scenario())
    assert during == 5, "epoch 4's answers were refused while the compare-and-set ran"
    assert after == 5 and epoch.number == 5 and epoch.master == "heir"


def test_an_epoch_lost_by_zookeeper_never_goes_back(tmp_path: Path):
    async def scenario() -> Epoch:
        rpc = Rpc("amqp://unused", "t.", 1, 1)
        dcs = SlowCoordinator(rpc, Epoch(0, None))  # the node is gone
        cluster = Cluster(Settings(run_dir=tmp_path), dcs, runtime=None, rpc=rpc)  # type: ignore[arg-type]
        cluster.epoch = Epoch(9, "old", 3)
        await cluster._elect("heir")
        return cluster.epoch

    assert asyncio.run(scenario()).number == 10
