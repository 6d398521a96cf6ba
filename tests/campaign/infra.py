"""The campaign's own RabbitMQ and ZooKeeper: one node of each, or a 3-node cluster and ensemble
(``rideshare.infra.local``), never the machine's shared ones, so that the nemesis may kill and
restart them freely. Every node is behind a fault-injecting proxy."""

from __future__ import annotations

import os
import random
from pathlib import Path

from rideshare.infra.local import LocalInfra, Ports
from rideshare.infra.rabbitmq import RabbitNode
from rideshare.infra.zookeeper import ZkServer
from rideshare.localhost import free_port
from tests.campaign.proxy import FaultProxy


class CampaignInfra:
    def __init__(self, run_dir: Path, name: str, nodes: int = 1) -> None:
        self.nodes = nodes
        self.local = LocalInfra(run_dir / "infra-state", Ports.free(nodes), f"rs-{name}")
        self._state: dict[str, object] = {}
        self.amqp_proxies: list[FaultProxy] = []
        self.zk_proxies: list[FaultProxy] = []

    @property
    def base(self) -> Path:
        return Path(str(self._state["data"]))

    @property
    def rabbits(self) -> list[RabbitNode]:
        return self.local.rabbit_nodes(self._state)

    @property
    def zookeepers(self) -> list[ZkServer]:
        return self.local.zk_servers(self._state)

    def start(self) -> None:
        self.local.up(self.nodes)
        self._state = self.local._state() or {}
        self.amqp_proxies = [FaultProxy(free_port(), n.port, f"amqp-{i}")
                             for i, n in enumerate(self.rabbits, 1)]
        self.zk_proxies = [FaultProxy(free_port(), z.client_port, f"zk-{i}")
                           for i, z in enumerate(self.zookeepers, 1)]
        for proxy in [*self.amqp_proxies, *self.zk_proxies]:
            proxy.start()

    def stop(self) -> None:
        for proxy in [*self.amqp_proxies, *self.zk_proxies]:
            try:
                proxy.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                print(f"stopping a proxy: {exc!r}")
        try:
            if os.environ.get("RIDESHARE_KEEP_INFRA"):
                self.local.down()
            else:
                self.local.destroy()
        except Exception as exc:  # noqa: BLE001
            print(f"stopping campaign infrastructure: {exc!r}")

    def env(self) -> dict[str, str]:
        """What the campaign's stack is given: everything goes through the proxies."""
        return {
            "RIDESHARE_AMQP_URLS": ",".join(f"amqp://guest:guest@127.0.0.1:{p.listen_port}/"
                                            for p in self.amqp_proxies),
            "RIDESHARE_ZK_HOSTS": ",".join(f"127.0.0.1:{p.listen_port}" for p in self.zk_proxies),
            "RIDESHARE_QUORUM_QUEUES": "true" if self.nodes > 1 else "false",
        }

    # --- what the nemesis does to them ---------------------------------------------------------

    def cut(self, pid: int, amqp: bool) -> None:
        for proxy in self.amqp_proxies if amqp else self.zk_proxies:
            proxy.cut(pid)

    def heal(self) -> None:
        for proxy in [*self.amqp_proxies, *self.zk_proxies]:
            proxy.heal()

    def restart_rabbitmq(self, kill: bool, node: RabbitNode | None = None) -> str:
        """One node (all of them when there is one): stopped or killed, then started again."""
        victim = node or random.choice(self.rabbits)
        if kill:
            victim.kill()
        else:
            victim.stop()
        victim.wait_gone()
        victim.start()
        return victim.nodename

    def restart_zookeeper(self, kill: bool = False, server: ZkServer | None = None) -> int:
        victim = server or random.choice(self.zookeepers)
        if kill:
            victim.kill()
        else:
            victim.stop()
        victim.start()
        return victim.myid

    def zookeeper_leader(self) -> ZkServer:
        modes = {z.myid: z.mode() for z in self.zookeepers}
        leader = next((z for z in self.zookeepers if modes[z.myid] in ("leader", "standalone")),
                      None)
        return leader or self.zookeepers[0]

    def rabbit_leading(self, queue: str) -> RabbitNode:
        """The node that leads ``queue`` (a quorum queue), else the first node."""
        for node in self.rabbits:
            listed = node.ctl("-q", "--no-table-headers", "list_queues", "name", "leader",
                              timeout_s=30)
            if listed.returncode == 0:
                for line in listed.stdout.splitlines():
                    name, _, leader = line.partition("\t")
                    if name == queue:
                        return next((n for n in self.rabbits if n.nodename == leader.strip()),
                                    self.rabbits[0])
                break
        return self.rabbits[0]
