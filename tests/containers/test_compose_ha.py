"""``docker compose --profile ha``: RideShare in containers on a 3-node RabbitMQ cluster with quorum
queues and a 3-server ZooKeeper ensemble. Users are created through the gateway while the broker
node that leads ``writeQ`` is killed, then the ZooKeeper leader; each time writes are acknowledged
again within the bound (the time is printed), and every acknowledged user is there at the end.

Run by ``make test-ha`` (with tests/ha), not by ``make test``: it takes minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.containers.test_compose import Stack, Writer
from tests.support import wait_until

BOUND_S = 30.0


@pytest.fixture
def ha_stack(docker_engine: Any, app_image: str, base_image: str,
             standin_images: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    s = Stack(docker_engine, app_image, base_image, standin_images, tmp_path, profile="ha")
    try:
        yield s
    finally:
        if s.leftovers():
            s.force_clean()


def service(stack: Stack, name: str) -> Any:
    found = stack.containers(**{"com.docker.compose.project": stack.project,
                                "com.docker.compose.service": name})
    assert len(found) == 1, f"one container of {name}: {[c.name for c in found]}"
    return found[0]


def run_in(container: Any, *command: str) -> str:
    code, output = container.exec_run(list(command))
    assert code == 0, f"{command} in {container.name}: {output.decode(errors='replace')}"
    return str(output.decode(errors="replace"))


def queues(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every queue as the cluster sees it: name -> type, leader, members."""
    for node in ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3"):
        container = service(stack, node)
        container.reload()
        if container.status != "running":
            continue
        out = run_in(container, "rabbitmqctl", "-q", "list_queues", "name", "type", "leader",
                     "members", "--formatter", "json")
        return {q["name"]: q for q in json.loads(out)}
    raise AssertionError("no RabbitMQ node runs")


def zookeeper_leader(stack: Stack) -> str:
    for name in ("zookeeper-1", "zookeeper-2", "zookeeper-3"):
        out = run_in(service(stack, name), "bash", "-c",
                     "exec 3<>/dev/tcp/127.0.0.1/2181; printf srvr >&3; cat <&3")
        if "Mode: leader" in out:
            return name
    raise AssertionError("no ZooKeeper server leads")


def acknowledged_again(writer: Writer, what: str) -> float:
    before, since = len(writer.acked), time.monotonic()
    wait_until(lambda: len(writer.acked) > before + 5, BOUND_S,
               f"users created again after {what}")
    took = time.monotonic() - since
    print(f"{what}: users created again within {took:.1f} s")
    return took


def test_the_ha_profile_keeps_every_acknowledged_write_through_infrastructure_kills(
        ha_stack: Stack) -> None:
    stack = ha_stack
    stack.run("up", "-d", timeout_s=900, what="compose --profile ha up")
    with stack.clients() as (gw, orch):
        wait_until(lambda: orch.get("/health").status_code == 200, 300,
                   "a master and a slave serve on the 3-node infrastructure")
        wait_until(lambda: gw.get("/api/v1/_count").status_code == 200, 120,
                   "the gateway answers")
        seen = queues(stack)
        write_q = seen["writeQ"]
        assert write_q["type"] == "quorum" and len(write_q["members"]) == 3, write_q
        assert seen["readQ"]["type"] == "quorum"
        assert all(q["type"] == "quorum" for name, q in seen.items()
                   if name.startswith("syncQ.")), seen

        writer = Writer(stack.gateway, "ha")
        writer.start()
        try:
            wait_until(lambda: len(writer.acked) >= 20, 60, "users are created")
            leader = str(write_q["leader"]).split("@", 1)[1]  # rabbit@rabbitmq-2 -> rabbitmq-2
            service(stack, leader).kill()
            acknowledged_again(writer, f"killing {leader}, which led writeQ")
            service(stack, leader).start()

            zk_leader = zookeeper_leader(stack)
            service(stack, zk_leader).kill()
            acknowledged_again(writer, f"killing {zk_leader}, the ZooKeeper leader")
            service(stack, zk_leader).start()
            wait_until(lambda: len(writer.acked) >= 20 + 40, 120, "users are still created")
        finally:
            writer.stop.set()
            writer.join(60)
        stored = set(wait_until(lambda: gw.get("/api/v1/users").json(), 60, "the users list"))
        missing = set(writer.acked) - stored
        assert not missing, f"acknowledged users lost: {sorted(missing)[:10]}"

    stack.remove_all()
