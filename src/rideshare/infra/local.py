"""``rideshare infra``: a RabbitMQ cluster and a ZooKeeper ensemble of several nodes on this
machine, from Debian's packages, on their own ports and data (the system's own RabbitMQ and
ZooKeeper are never touched).

The state (ports, cookie) is ``<run_dir>/infra/state.json``; ``<run_dir>/infra.env`` holds the
settings that reach them (``RIDESHARE_AMQP_URLS``, ``RIDESHARE_ZK_HOSTS``,
``RIDESHARE_QUORUM_QUEUES``). The nodes' data lives in ``<run_dir>/infra/`` when Debian's
``rabbitmq`` user can reach it, else under ``/var/lib/rideshare`` (``folders.py``).
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rideshare.folders import ServiceUser, reachable_folder, remove_folder
from rideshare.infra.process import port_answers, read_pid
from rideshare.infra.rabbitmq import RabbitNode, service_user
from rideshare.infra.zookeeper import ZkServer
from rideshare.localhost import free_port, port_free, read_json_object


@dataclass(frozen=True)
class Ports:
    """Node i listens on base + i: AMQP 5681.., Erlang distribution 25681.., ZooKeeper clients
    2191.., quorum 2891.., election 3891.. (none of them the system's own)."""

    amqp: int = 5680
    dist: int = 25680
    zookeeper: int = 2190
    quorum: int = 2890
    election: int = 3890

    @classmethod
    def free(cls, nodes: int) -> Ports:
        """Bases such that base + 1 .. base + nodes are free ports on loopback, for a cluster
        beside any other (tests, benchmarks)."""
        def base() -> int:
            while True:
                start = free_port()
                if start + nodes < 65000 and all(port_free(start + i)
                                                 for i in range(1, nodes + 1)):
                    return start
        return cls(base(), base(), base(), base(), base())


@dataclass
class LocalInfra:
    run_dir: Path
    ports: Ports = Ports()
    name: str = "rs-infra"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "infra" / "state.json"

    @property
    def env_file(self) -> Path:
        return self.run_dir / "infra.env"

    def _data(self) -> Path:
        return reachable_folder(self.run_dir, "infra", [service_user(), ServiceUser.current()])

    def _state(self) -> dict[str, Any] | None:
        return read_json_object(self.state_file)

    def rabbit_nodes(self, state: dict[str, Any]) -> list[RabbitNode]:
        data = Path(state["data"])
        p = self.ports
        return [RabbitNode(f"{self.name}-{i}", p.amqp + i, p.dist + i, data / f"rabbitmq-{i}",
                           state["cookie"]) for i in range(1, state["nodes"] + 1)]

    def zk_servers(self, state: dict[str, Any]) -> list[ZkServer]:
        data, p = Path(state["data"]), self.ports
        peers = {i: (p.quorum + i, p.election + i) for i in range(1, state["nodes"] + 1)}
        servers = []
        for i in range(1, state["nodes"] + 1):
            server = ZkServer(i, p.zookeeper + i, data / f"zookeeper-{i}",
                              peers if state["nodes"] > 1 else {})
            server.pid = read_pid(server.base / "zookeeper.pid")
            servers.append(server)
        return servers

    def env(self, state: dict[str, Any]) -> dict[str, str]:
        return {
            "RIDESHARE_AMQP_URLS": ",".join(n.url for n in self.rabbit_nodes(state)),
            "RIDESHARE_ZK_HOSTS": ",".join(z.address for z in self.zk_servers(state)),
            "RIDESHARE_QUORUM_QUEUES": "true" if state["nodes"] > 1 else "false",
        }

    # --- up, down, status ----------------------------------------------------------------------

    def up(self, nodes: int = 3, timeout_s: float = 120.0) -> dict[str, str]:
        """Start every node (a new cluster and ensemble the first time; the same ones, with
        their data, after a ``down``); write ``infra.env``; its settings."""
        state = self._state()
        fresh = state is None or state["nodes"] != nodes
        if fresh:
            state = {"nodes": nodes, "cookie": secrets.token_hex(16), "data": str(self._data())}
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(state, indent=2))
        assert state is not None
        zookeepers, rabbits = self.zk_servers(state), self.rabbit_nodes(state)
        for server in zookeepers:
            if not server.running():
                server.start()
        deadline = time.monotonic() + timeout_s
        while not all(z.mode() for z in zookeepers):
            if time.monotonic() > deadline:
                raise RuntimeError("the ZooKeeper ensemble did not form a quorum in time")
            time.sleep(0.25)
        waiting = [n for n in rabbits if not port_answers(n.port)]
        with ThreadPoolExecutor(len(rabbits)) as pool:  # together: each waits for its peers
            list(pool.map(lambda n: n.start(timeout_s), waiting))
        if fresh and nodes > 1:
            for node in rabbits[1:]:
                node.join(rabbits[0])
        settings = self.env(state)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return settings

    def down(self) -> None:
        state = self._state()
        if state is None:
            return
        for node in self.rabbit_nodes(state):
            node.stop()
        for server in self.zk_servers(state):
            server.stop()

    def destroy(self) -> None:
        """``down``, then remove every node's data and the state: nothing of it is left."""
        state = self._state()
        self.down()
        if state is not None:
            remove_folder(Path(state["data"]))
        remove_folder(self.state_file.parent)
        self.env_file.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        state = self._state()
        if state is None:
            return {"nodes": 0}
        rabbits = self.rabbit_nodes(state)
        out: dict[str, Any] = {"nodes": state["nodes"], "env": self.env(state),
                               "rabbitmq": [], "zookeeper": [], "queues": []}
        for node in rabbits:
            out["rabbitmq"].append({"node": node.nodename, "port": node.port,
                                    "running": port_answers(node.port)})
        for server in self.zk_servers(state):
            out["zookeeper"].append({"server": server.myid, "address": server.address,
                                     "mode": server.mode() or "down"})
        live = next((n for n in rabbits if port_answers(n.port)), None)
        if live is not None:
            listed = live.ctl("-q", "--no-table-headers", "list_queues", "name", "type",
                              "leader", "messages")
            for line in listed.stdout.splitlines():
                parts = line.split("\t")
                if len(parts) == 4:
                    out["queues"].append(dict(zip(("name", "type", "leader", "messages"),
                                                  parts, strict=True)))
        return out
