"""The whole system in containers, for real: the image is built, ``docker-compose.yml`` comes up
with local stand-ins for the official RabbitMQ, ZooKeeper and nginx images (Debian's packages on a
debootstrapped base), the original grader's flow runs through the gateway, each worker container
runs a PostgreSQL server of its own on a volume of its own, the crash APIs kill worker containers
that are then removed and replaced, no acknowledged write is lost, ``down`` then ``up`` keeps the
data (the first master mounts the most advanced copy), and ``down -v`` plus the README's removal
of the copies' volumes leaves no container, network or volume behind.

The stack has its own compose project name and publishes only the gateway and (for the crash
calls, which the gateway refuses with 403) the orchestrator, both on free 127.0.0.1 ports.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rideshare.localhost import free_port
from tests.containers.conftest import LOG_DIR, compose_cli, run_logged, tail
from tests.containers.test_runtime_contract import host_cmdline
from tests.support import ROOT, wait_until

PASSWORD = "3d725109c7e7c0bfb9d709836735b56d943d263f"  # 40 hex digits, as the grader sends


class Stack:
    def __init__(self, client: Any, app_image: str, base_image: str,
                 standins: dict[str, str], tmp: Path, profile: str = "single") -> None:
        self.client = client
        self.project = f"rstest{uuid.uuid4().hex[:8]}"
        orchestrator = "orchestrator" if profile == "single" else f"orchestrator-{profile}"
        self.gateway_port, self.orchestrator_port = free_port(), free_port()
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.orchestrator = f"http://127.0.0.1:{self.orchestrator_port}"
        override = tmp / "docker-compose.test.yml"
        override.write_text(
            "services:\n"
            f"  {orchestrator}:\n"
            "    ports:\n"
            f"      - \"127.0.0.1:{self.orchestrator_port}:8090\"\n")
        self.compose = [*compose_cli(), "-p", self.project, "--profile", profile, "-f",
                        str(ROOT / "docker-compose.yml"), "-f", str(override)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RIDESHARE_")}
        self.env.update({
            "RIDESHARE_IMAGE": app_image,
            "RIDESHARE_BASE_IMAGE": base_image,
            "RIDESHARE_RABBITMQ_IMAGE": standins["rabbitmq"],
            "RIDESHARE_ZOOKEEPER_IMAGE": standins["zookeeper"],
            "RIDESHARE_NGINX_IMAGE": standins["nginx"],
            "RIDESHARE_GATEWAY_PUBLISH": f"127.0.0.1:{self.gateway_port}",
            "RIDESHARE_SCALE_INTERVAL": "3600",  # one slave throughout: no scaling here
            "COMPOSE_HTTP_TIMEOUT": "300",
        })
        self.log = LOG_DIR / f"compose-{self.project}.log"
        self.volumes_before = {v.name for v in client.volumes.list()}

    def run(self, *args: str, timeout_s: float, what: str) -> None:
        run_logged([*self.compose, *args], self.log, timeout_s, what, self.env)

    def containers(self, **labels: str) -> list[Any]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return self.client.containers.list(all=True, filters=filters)

    def workers(self) -> dict[str, int]:
        """Running worker containers of this stack: name -> host PID (State.Pid)."""
        out = {}
        for c in self.containers(**{"io.rideshare.stack": self.project,
                                    "io.rideshare.role": "worker"}):
            c.reload()
            if c.attrs["State"]["Running"]:
                out[c.name] = c.attrs["State"]["Pid"]
        return out

    def all_worker_containers(self) -> set[str]:
        return {c.name for c in self.containers(**{"io.rideshare.stack": self.project})}

    def logs(self) -> str:
        parts = [f"--- compose log\n{tail(self.log, 4000)}"]
        for c in [*self.containers(**{"com.docker.compose.project": self.project}),
                  *self.containers(**{"io.rideshare.stack": self.project})]:
            try:
                parts.append(f"--- {c.name}\n" + c.logs(tail=80).decode(errors="replace"))
            except Exception:  # noqa: BLE001
                pass
        return "\n".join(parts)

    def leftovers(self) -> list[str]:
        left = [f"container {c.name}" for c in
                self.containers(**{"com.docker.compose.project": self.project})]
        left += [f"container {name}" for name in self.all_worker_containers()]
        left += [f"network {n.name}" for n in self.client.networks.list()
                 if n.name.startswith(self.project)]
        left += [f"volume {v.name}" for v in self.client.volumes.list()
                 if v.name not in self.volumes_before]
        return left

    @contextmanager
    def clients(self) -> Iterator[tuple[httpx.Client, httpx.Client]]:
        """Clients of the gateway and the orchestrator; on a failure, every container's log."""
        gw = httpx.Client(base_url=self.gateway, timeout=30)
        orch = httpx.Client(base_url=self.orchestrator, timeout=30)
        try:
            yield gw, orch
        except BaseException:
            print(self.logs())
            raise
        finally:
            gw.close()
            orch.close()

    def remove_all(self) -> None:
        """``down -v``, then the copies' volumes as the README says: nothing may be left."""
        self.run("down", "-v", timeout_s=300, what="compose down -v")
        for volume in self.client.volumes.list(
                filters={"label": f"io.rideshare.stack={self.project}"}):
            volume.remove()  # the workers' copies (README: "Containers")
        left = self.leftovers()
        assert not left, f"left behind after down -v: {left}"

    def force_clean(self) -> None:
        """The safety net when the test failed half-way: remove whatever is left."""
        with_label = self.containers(**{"io.rideshare.stack": self.project})
        with_label += self.containers(**{"com.docker.compose.project": self.project})
        for c in with_label:
            try:
                c.remove(force=True, v=True)
            except Exception:  # noqa: BLE001
                pass
        try:
            self.run("down", "-v", "--remove-orphans", "-t", "5", timeout_s=120,
                     what="compose down (cleanup)")
        except BaseException:  # noqa: BLE001 - pytest.fail raises; this is cleanup
            pass
        for v in self.client.volumes.list():
            if v.name not in self.volumes_before and v.name.startswith(self.project):
                try:
                    v.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass


@pytest.fixture
def stack(docker_engine: Any, app_image: str, base_image: str,
          standin_images: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    s = Stack(docker_engine, app_image, base_image, standin_images, tmp_path)
    try:
        yield s
    finally:
        if s.leftovers():
            s.force_clean()


def future_timestamp(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%d-%m-%Y:%S-%M-%H")


class Writer(threading.Thread):
    """Creates users through the gateway until stopped; remembers every acknowledged one."""

    def __init__(self, gateway: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.gateway, self.prefix = gateway, prefix
        self.acked: list[str] = []
        self.failed: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.gateway, timeout=30) as http:
            n = 0
            while not self.stop.is_set() and n < 20000:
                name = f"{self.prefix}{n}"
                try:
                    r = http.put("/api/v1/users", json={"username": name, "password": PASSWORD},
                                 headers={"Idempotency-Key": name})
                except httpx.HTTPError:
                    self.stop.wait(0.05)
                    continue
                if r.status_code != 201:
                    self.failed[r.status_code] = self.failed.get(r.status_code, 0) + 1
                if r.status_code == 201:
                    self.acked.append(name)
                    n += 1
                    self.stop.wait(0.02)
                elif r.status_code == 400:  # not acknowledged to us: on to the next name
                    n += 1
                else:  # 503 during a failover: retry the same key (never applied twice)
                    self.stop.wait(0.05)


def test_compose_stack(stack: Stack) -> None:
    started = time.monotonic()
    stack.run("build", "--force-rm", timeout_s=900, what="compose build")
    stack.run("up", "-d", timeout_s=600, what="compose up")
    with stack.clients() as (gw, orch):
        wait_until(lambda: orch.get("/health").status_code == 200, 180,
                   "the orchestrator has a master and a slave")
        wait_until(lambda: gw.get("/api/v1/db/anything").status_code == 403, 120,
                   "the gateway answers (and refuses admin paths)")
        wait_until(lambda: gw.get("/api/v1/_count").status_code == 200, 60,
                   "the gateway reaches the rides service")
        up_s = time.monotonic() - started

        grader_flow(gw)
        check_workers_are_containers(stack, orch)
        check_each_worker_has_its_own_server(stack)
        names = crashes_lose_nothing(stack, gw, orch)
        stack.run("down", timeout_s=180, what="compose down (the data stays)")
        assert not stack.workers(), "down stops every worker container"
        stack.run("up", "-d", timeout_s=600, what="compose up again")
        wait_until(lambda: orch.get("/health").status_code == 200, 180,
                   "a master and a slave serve again after down and up")
        again = set(wait_until(lambda: gw.get("/api/v1/users").json(), 60, "the users list"))
        assert again == names, "every user is still there after down and up"

    stack.remove_all()
    print(f"compose stack: up in {up_s:.0f} s, whole test {time.monotonic() - started:.0f} s")


def grader_flow(gw: httpx.Client) -> None:
    """The original grader's calls, through the gateway, with its status codes."""
    for name in ("alice", "bob"):
        r = gw.put("/api/v1/users", json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, r.text
    ts = future_timestamp()
    r = gw.post("/api/v1/rides", json={"created_by": "alice", "timestamp": ts,
                                       "source": "1", "destination": "2"})
    assert r.status_code == 201, r.text
    ride = r.json()["rideId"]
    r = gw.get("/api/v1/rides", params={"source": "1", "destination": "2"})
    assert r.status_code == 200, r.text
    assert {"rideId": ride, "username": "alice", "timestamp": ts} in r.json()
    r = gw.post(f"/api/v1/rides/{ride}", json={"username": "bob"})
    assert r.status_code == 200, r.text
    r = gw.get(f"/api/v1/rides/{ride}")
    assert r.status_code == 200, r.text
    assert r.json() == {"rideId": ride, "Created_by": "alice", "users": ["bob"],
                        "Timestamp": ts, "source": 1, "destination": 2}
    assert gw.delete(f"/api/v1/rides/{ride}").status_code == 200
    assert gw.get(f"/api/v1/rides/{ride}").status_code == 204
    assert gw.delete("/api/v1/users/bob").status_code == 200
    assert gw.delete("/api/v1/users/nobody-at-all").status_code == 400
    assert gw.get("/api/v1/rides", params={"source": "3", "destination": "4"}).status_code == 204
    assert gw.post("/api/v1/crash/master").status_code == 403, "the gateway refuses admin paths"
    assert gw.get("/api/v1/worker/list").status_code == 403


def check_workers_are_containers(stack: Stack, orch: httpx.Client) -> dict[str, int]:
    """worker/list == the host PIDs (State.Pid) of this stack's running worker containers."""
    def agree() -> dict[str, int] | None:
        listed = orch.get("/api/v1/worker/list").json()
        workers = stack.workers()
        return workers if listed == sorted(workers.values()) and len(listed) == 2 else None

    workers = wait_until(agree, 60, "worker/list matches the worker containers' host PIDs")
    for name, pid in workers.items():
        # The entrypoint execs the worker in the same process (PID) within a moment of starting.
        wait_until(lambda: "rideshare.worker" in host_cmdline(pid), 10,
                   f"{name}: host PID {pid} is the worker's process")
    return workers


def check_each_worker_has_its_own_server(stack: Stack) -> None:
    """A postmaster runs inside every worker container, on that worker's own volume."""
    for container in stack.containers(**{"io.rideshare.stack": stack.project,
                                          "io.rideshare.role": "worker"}):
        processes = wait_until(lambda: [p[-1] for p in container.top()["Processes"]
                                        if "postgres -D" in p[-1]], 30,
                               f"{container.name} runs its PostgreSQL server")
        assert len(processes) == 1 and "/var/lib/rideshare/pgdata" in processes[0]
        container.reload()
        [mount] = [m for m in container.attrs["Mounts"] if m["Type"] == "volume"]
        copy = container.labels["io.rideshare.copy"]
        assert mount["Name"] == f"{stack.project}-copy-{copy}"


def crashes_lose_nothing(stack: Stack, gw: httpx.Client, orch: httpx.Client) -> set[str]:
    writer = Writer(stack.gateway, "w")
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) >= 20, 60, "writes are acknowledged")
        for victim in ("slave", "master"):
            before = check_workers_are_containers(stack, orch)
            epoch = orch.get("/api/v1/cluster").json()["epoch"]
            r = orch.post(f"/api/v1/crash/{victim}")
            assert r.status_code == 200, r.text
            [pid] = r.json()
            assert isinstance(pid, int)
            killed = [name for name, p in before.items() if p == pid]
            assert killed, f"crash/{victim} answered {pid}, not a worker container's host PID"
            acked = len(writer.acked)
            wait_until(lambda: killed[0] not in stack.all_worker_containers(), 30,
                       f"the killed {victim}'s container is removed")
            after = check_workers_are_containers(stack, orch)
            assert pid not in after.values() and killed[0] not in after
            assert len(set(after) - set(before)) == 1, "one new worker container replaced it"
            wait_until(lambda: orch.get("/health").status_code == 200, 60,
                       "a master and a slave serve again")
            if victim == "master":
                assert orch.get("/api/v1/cluster").json()["epoch"] > epoch, "a new master"
            wait_until(lambda: len(writer.acked) >= acked + 10, 60,
                       f"writes are acknowledged again after crash/{victim}")
    finally:
        writer.stop.set()
        writer.join(40)
    assert not writer.is_alive()
    names = set(wait_until(lambda: gw.get("/api/v1/users").json(), 30, "the users list"))
    lost = [n for n in writer.acked if n not in names]
    assert not lost, f"acknowledged writes lost: {lost[:10]} (of {len(writer.acked)})"
    assert "alice" in names and "bob" not in names
    print(f"{len(writer.acked)} acknowledged writes, none lost; non-201 answers: "
          f"{writer.failed}")
    return names
