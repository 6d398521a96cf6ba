"""RideShare on replicated infrastructure: a 3-node RabbitMQ cluster with quorum queues and a
3-server ZooKeeper ensemble of the test's own. Infrastructure nodes are killed with -9 under the
campaign's workload (every write recorded, reads checked for read-your-writes): nothing
acknowledged is lost or doubled, and writes are acknowledged again within 15 s."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from rideshare.infra.rabbitmq import RabbitNode
from rideshare.localhost import pid_alive
from tests.campaign.checker import check
from tests.campaign.infra import CampaignInfra
from tests.campaign.run import STACK_SETTINGS
from tests.campaign.workload import Workload, WriteRecord
from tests.support import RunningStack, copies_agree, wait_until

pytestmark = pytest.mark.faults
BOUND_S = 15.0


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, CampaignInfra]]:
    run_dir = tmp_path_factory.mktemp("ha")
    infra = CampaignInfra(run_dir, f"h{uuid.uuid4().hex[:6]}", nodes=3)
    infra.start()
    stack = RunningStack(run_dir / "stack", {**STACK_SETTINGS, **infra.env()})
    try:
        stack.up()
        wait_until(lambda: serving(stack) == 3, 90, "a master and two slaves serve")
        yield stack, infra
    finally:
        stack.cli("down")
        left = stack.leftovers()
        stack.cleanup()
        infra.stop()
        assert not left, f"processes left running after rideshare down: {left}"


def assert_nothing_lost(stack: RunningStack, workload: Workload) -> None:
    """Once the cluster is whole and its copies agree: the checker finds nothing."""
    wait_until(lambda: serving(stack) == 3, 90, "a master and two slaves serve")
    wait_until(lambda: copies_agree(stack), 90, "every copy holds the same data")
    verdict = check(stack, workload.history, [])
    assert verdict.clean, verdict.problems


def serving(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def acked_after(workload: Workload, moment: float) -> list[WriteRecord]:
    return [w for w in list(workload.history.writes.values())
            if w.outcome == "ok" and w.acked_at > moment]


def writes_back_within_the_bound(workload: Workload, since: float, what: str,
                                 infra: CampaignInfra | None = None) -> float:
    try:
        wait_until(lambda: acked_after(workload, since), BOUND_S,
                   f"writes acknowledged after {what}")
    except AssertionError:
        for proc in workload.stack.leftovers():  # where each worker waits, into its log
            if "rideshare.worker" in " ".join(proc.cmdline()):
                proc.send_signal(signal.SIGUSR1)
        for node in (infra.rabbits if infra else []):
            print(node.nodename, node.ctl("list_queues", "name", "type", "leader", "members",
                                          "online", "messages", timeout_s=30).stdout)
        raise
    took = min(w.acked_at for w in acked_after(workload, since)) - since
    print(f"{what}: writes acknowledged again {took:.2f} s later")
    return took


def test_the_queues_are_quorum_queues_and_writeq_has_a_single_active_consumer(ha):
    stack, infra = ha
    prefix = stack.env["RIDESHARE_QUEUE_PREFIX"]
    listed = infra.rabbits[0].ctl("-q", "--no-table-headers", "list_queues", "name", "type",
                                  "arguments").stdout
    types = {line.split("\t")[0]: line.split("\t")[1] for line in listed.splitlines()}
    for queue in ("writeQ", "readQ", "deadQ"):
        assert types.get(prefix + queue) == "quorum", types
    assert [t for n, t in types.items() if n.startswith(prefix + "syncQ.")] == ["quorum"] * 2
    assert "x-single-active-consumer" in next(
        line for line in listed.splitlines() if line.startswith(prefix + "writeQ"))


def writes_go_on(workload: Workload, what: str) -> None:
    """Ten more writes acknowledged from now: the cluster works with the node back, under load,
    before the workload stops."""
    since = time.monotonic()
    wait_until(lambda: len(acked_after(workload, since)) >= 10, 30, f"writes go on once {what}")


def broker_node_killed_under_load(stack: RunningStack, infra: CampaignInfra, node: RabbitNode,
                                  seed: int) -> None:
    """kill -9 of ``node`` under the workload; writes come back within the bound; the node is
    started again and writes go on; then nothing was lost."""
    workload = Workload(stack, seed=seed)
    workload.prepare()
    with workload:
        wait_until(lambda: len(acked_after(workload, 0)) >= 50, 30, "writes flow")
        killed_at = time.monotonic()
        node.kill()
        writes_back_within_the_bound(workload, killed_at, f"killing {node.nodename}", infra)
        node.start()
        writes_go_on(workload, "the node is back")
    assert_nothing_lost(stack, workload)


def test_killing_the_broker_node_that_leads_writeq_loses_nothing(ha):
    stack, infra = ha
    node = infra.rabbit_leading(stack.env["RIDESHARE_QUEUE_PREFIX"] + "writeQ")
    broker_node_killed_under_load(stack, infra, node, seed=21)


def test_killing_the_broker_node_every_part_is_connected_to_loses_nothing(ha):
    """Every part connects to the first node first: all of them move to another node, and the
    orchestrator's requests are published again on a fresh channel if the broker refuses them."""
    stack, infra = ha
    broker_node_killed_under_load(stack, infra, infra.rabbits[0], seed=25)


def test_killing_the_zookeeper_leader_loses_nothing(ha):
    stack, infra = ha
    workload = Workload(stack, seed=22)
    leader = infra.zookeeper_leader()
    with workload:
        wait_until(lambda: len(acked_after(workload, 0)) >= 50, 30, "writes flow")
        killed_at = time.monotonic()
        leader.kill()
        time.sleep(1)  # writes may go on throughout; they must at least come back in time
        writes_back_within_the_bound(workload, killed_at + 1, f"killing ZooKeeper {leader.myid}")
        leader.start()
        writes_go_on(workload, "the ZooKeeper server is back")
    assert_nothing_lost(stack, workload)


def test_a_master_fails_over_while_a_broker_node_is_down(ha):
    stack, infra = ha
    workload = Workload(stack, seed=23)
    node = infra.rabbits[2]
    with workload:
        wait_until(lambda: len(acked_after(workload, 0)) >= 50, 30, "writes flow")
        node.kill()
        epoch = stack.cluster()["epoch"]
        master = next(w for w in stack.cluster()["workers"] if w["state"] == "master")
        killed_at = time.monotonic()
        os.kill(master["pid"], signal.SIGKILL)
        wait_until(lambda: any(w.epoch > epoch for w in acked_after(workload, killed_at)),
                   BOUND_S, "a write acknowledged by a new master, one broker node down")
        print(f"new master's first write {time.monotonic() - killed_at:.2f} s after the kill")
        node.start()
        writes_go_on(workload, "the node is back")
    assert_nothing_lost(stack, workload)


def test_a_deposed_master_still_connected_gets_nothing_acknowledged(ha):
    """Quorum queues have no exclusive consumer: the paused master stays writeQ's active consumer
    until the broker drops its connection. Its answers carry an old epoch, which the orchestrator
    refuses; when it resumes it leaves by itself (its session is gone)."""
    stack, infra = ha
    workload = Workload(stack, seed=24)
    with workload:
        wait_until(lambda: len(acked_after(workload, 0)) >= 50, 30, "writes flow")
        epoch = stack.cluster()["epoch"]
        master = next(w for w in stack.cluster()["workers"] if w["state"] == "master")
        os.kill(master["pid"], signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            wait_until(lambda: any(w.epoch > epoch for w in acked_after(workload, paused_at)),
                       BOUND_S, "a write acknowledged in a new epoch")
            time.sleep(max(0.0, paused_at + 12 - time.monotonic()))
        finally:
            os.kill(master["pid"], signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: not pid_alive(master["pid"]), 30, "the resumed master leaves")
    late = [w for w in acked_after(workload, resumed_at) if w.epoch <= epoch]
    assert late == [], "the deposed master got no write acknowledged after it resumed"
    assert_nothing_lost(stack, workload)
