"""The campaign's own RabbitMQ node and ZooKeeper server (never the machine's shared ones, so the
nemesis may kill and restart them freely), each behind a fault-injecting proxy."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from rideshare.folders import ServiceUser, reachable_folder
from rideshare.infra.rabbitmq import RabbitNode, service_user
from rideshare.infra.zookeeper import ZkServer
from tests.campaign.proxy import FaultProxy
from tests.support import free_port


class CampaignInfra:
    def __init__(self, run_dir: Path, name: str) -> None:
        self.base = reachable_folder(run_dir, "campaign-infra",
                                     [service_user(), ServiceUser.current()])
        self.rabbit = RabbitNode(f"rs-{name}", free_port(), free_port(), self.base / "rabbitmq",
                                 secrets.token_hex(16))
        self.zookeeper = ZkServer(1, free_port(), self.base / "zookeeper")
        self.amqp_proxy = FaultProxy(free_port(), self.rabbit.port, "amqp")
        self.zk_proxy = FaultProxy(free_port(), self.zookeeper.client_port, "zk")

    def start(self) -> None:
        self.zookeeper.start()
        self.rabbit.start()
        self.amqp_proxy.start()
        self.zk_proxy.start()

    def stop(self) -> None:
        for stop in (self.amqp_proxy.stop, self.zk_proxy.stop, self.rabbit.stop,
                     self.zookeeper.stop):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                print(f"stopping campaign infrastructure: {exc!r}")
        shutil.rmtree(self.base, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """What the campaign's stack is given: everything goes through the proxies."""
        return {"RIDESHARE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{self.amqp_proxy.listen_port}/",
                "RIDESHARE_ZK_HOSTS": f"127.0.0.1:{self.zk_proxy.listen_port}"}

    @property
    def direct_amqp_url(self) -> str:
        return self.rabbit.url

    # --- what the nemesis does to them ---------------------------------------------------------

    def restart_rabbitmq(self, kill: bool) -> None:
        if kill:
            self.rabbit.kill()
        else:
            self.rabbit.stop()
        self.rabbit.wait_gone()
        self.rabbit.start()

    def restart_zookeeper(self) -> None:
        self.zookeeper.stop()
        self.zookeeper.start()
