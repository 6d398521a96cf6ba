"""The nemesis: every kind of fault a real deployment meets, injected in a seeded round-robin so
that each kind gets its share, each followed by a check that the cluster recovered (a write and a
read acknowledged) in time."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from tests.campaign.infra import CampaignInfra
from tests.support import RunningStack, processes_of_data_dir

PAUSE_S = 7.0  # longer than the campaign's 4 s ZooKeeper session
CUT_S = 12.0
FREEZE_S = 8.0
RECOVERY_BOUND_S = 30.0
PAUSED_MASTER_BOUND_S = 15.0

KINDS = ("kill-master", "kill-slave", "kill-orchestrator", "pause-master", "pause-slave",
         "cut-zookeeper", "cut-rabbitmq", "cut-postgres", "restart-rabbitmq", "kill-rabbitmq",
         "restart-zookeeper", "kill-postgres", "disk-full")
#: On replicated infrastructure, besides: the broker node that leads writeQ killed with -9, and
#: the ZooKeeper leader (each started again after a while).
REPLICATED_KINDS = ("kill-writeq-leader", "kill-zookeeper-leader")
NODE_DOWN_S = 10.0
REPLICATED_BOUND_S = 15.0  # writes acknowledged again while the node is down


@dataclass
class Fault:
    kind: str
    target: str  # which worker it hit ("master"/"slave"), or the server
    started: float
    ended: float = 0.0
    recovered_in: float | None = None  # seconds from the measured moment to a write and a read
    bound: float = RECOVERY_BOUND_S
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.recovered_in is not None and self.recovered_in <= self.bound


@dataclass
class Nemesis:
    stack: RunningStack
    infra: CampaignInfra
    seed: int
    kinds: tuple[str, ...] = KINDS
    faults: list[Fault] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self._order: list[str] = []
        self._probes = 0
        self.can_fill_disks = os.geteuid() == 0
        self.overrides = Path(self.stack.env["RIDESHARE_TEST_WORKER_OVERRIDES"])

    def next_kind(self) -> str:
        if not self._order:
            self._order = [k for k in self.kinds
                           if (k != "disk-full" or self.can_fill_disks)
                           and (k not in REPLICATED_KINDS or self.infra.nodes > 1)]
            self.random.shuffle(self._order)
        return self._order.pop(0)

    # --- looking at the cluster ----------------------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        return self.stack.cluster()["workers"]

    def one(self, state: str) -> dict[str, Any] | None:
        found = [w for w in self.workers() if w["state"] == state]
        return self.random.choice(found) if found else None

    def settle(self, timeout_s: float = 90.0) -> bool:
        """Until a master and two slaves serve (bounded): each fault starts from a whole cluster."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                states = [w["state"] for w in self.workers()]
                if states.count("master") == 1 and states.count("slave") >= 2:
                    return True
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.25)
        return False

    def recovered(self, since: float, bound: float) -> float | None:
        """Seconds from ``since`` until a write and a read are acknowledged (None: not within
        twice the bound, which the checker reports)."""
        deadline = since + 2 * bound + 10
        wrote = False
        with httpx.Client(base_url=self.stack.orchestrator_url, timeout=5) as db:
            while time.monotonic() < deadline:
                self._probes += 1
                try:
                    if not wrote:
                        wrote = db.post("/api/v1/db/write", json={
                            "id": f"probe-{self.seed}-{self._probes}",
                            "ops": [{"op": "insert", "table": "request_counts",
                                     "values": {"service": "probe", "count": 0},
                                     "on_conflict": "ignore"}]}).status_code == 200
                    if wrote and db.post("/api/v1/db/read", json={
                            "table": "request_counts", "count": True}).status_code == 200:
                        return time.monotonic() - since
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        return None

    # --- one fault ------------------------------------------------------------------------------

    def inject(self, kind: str) -> Fault:
        handler: Callable[[Fault], float] = getattr(self, "_" + kind.replace("-", "_"))
        fault = Fault(kind, "", time.monotonic())
        try:
            measure_from = handler(fault)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be made is reported
            fault.note = f"could not inject: {exc!r}"
            measure_from = time.monotonic()
        fault.ended = fault.ended or time.monotonic()
        if fault.recovered_in is None:  # those measured while the fault lasts keep theirs
            fault.recovered_in = self.recovered(measure_from, fault.bound)
        self.faults.append(fault)
        return fault

    def _kill(self, fault: Fault, state: str) -> float:
        victim = self.one(state)
        assert victim is not None, f"no {state} to kill"
        fault.target = f"{state} {victim['id']}"
        os.kill(victim["pid"], signal.SIGKILL)
        return fault.started

    def _kill_master(self, fault: Fault) -> float:
        return self._kill(fault, "master")

    def _kill_slave(self, fault: Fault) -> float:
        return self._kill(fault, "slave")

    def _kill_orchestrator(self, fault: Fault) -> float:
        fault.target = "orchestrator"
        os.kill(self.stack.state()["parts"]["orchestrator"]["pid"], signal.SIGKILL)
        return fault.started

    def _pause(self, fault: Fault, state: str) -> float:
        victim = self.one(state)
        assert victim is not None, f"no {state} to pause"
        fault.target = f"{state} {victim['id']}"
        os.kill(victim["pid"], signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)
        finally:
            with_suppressed(lambda: os.kill(victim["pid"], signal.SIGCONT))
        fault.ended = time.monotonic()
        return fault.started if state == "master" else fault.ended

    def _pause_master(self, fault: Fault) -> float:
        fault.bound = PAUSED_MASTER_BOUND_S
        return self._pause(fault, "master")

    def _pause_slave(self, fault: Fault) -> float:
        return self._pause(fault, "slave")

    def _cut(self, fault: Fault, amqp: bool) -> float:
        state = self.random.choice(["master", "slave"])
        victim = self.one(state)
        assert victim is not None
        fault.target = f"{state} {victim['id']} from {'RabbitMQ' if amqp else 'ZooKeeper'}"
        self.infra.cut(victim["pid"], amqp)
        try:
            time.sleep(CUT_S)
        finally:
            self.infra.heal()
        fault.ended = time.monotonic()
        return fault.ended

    def _cut_zookeeper(self, fault: Fault) -> float:
        return self._cut(fault, amqp=False)

    def _cut_rabbitmq(self, fault: Fault) -> float:
        return self._cut(fault, amqp=True)

    def _cut_postgres(self, fault: Fault) -> float:
        """Its PostgreSQL server frozen (every process stopped): the worker runs, its database
        answers nothing."""
        state = self.random.choice(["master", "slave"])
        victim = self.one(state)
        assert victim is not None
        fault.target = f"{state} {victim['id']} from its PostgreSQL"
        frozen = processes_of_data_dir(self.stack.data_root() / victim["id"])
        for proc in frozen:
            with_suppressed(lambda p=proc: p.send_signal(signal.SIGSTOP))
        try:
            time.sleep(FREEZE_S)
        finally:
            for proc in frozen:
                with_suppressed(lambda p=proc: p.send_signal(signal.SIGCONT))
        fault.ended = time.monotonic()
        return fault.ended

    def _restart_rabbitmq(self, fault: Fault) -> float:
        fault.target = f"RabbitMQ {self.infra.restart_rabbitmq(kill=False)} (stop, start)"
        fault.ended = time.monotonic()
        return fault.ended

    def _kill_rabbitmq(self, fault: Fault) -> float:
        fault.target = f"RabbitMQ {self.infra.restart_rabbitmq(kill=True)} (kill -9, start)"
        fault.ended = time.monotonic()
        return fault.ended

    def _restart_zookeeper(self, fault: Fault) -> float:
        fault.target = f"ZooKeeper server {self.infra.restart_zookeeper()} (stop, start)"
        fault.ended = time.monotonic()
        return fault.ended

    def _kill_writeq_leader(self, fault: Fault) -> float:
        """The broker node leading writeQ, killed with -9: writes go on (measured from the kill);
        it comes back after a while and rejoins."""
        node = self.infra.rabbit_leading(self.stack.env["RIDESHARE_QUEUE_PREFIX"] + "writeQ")
        fault.target = f"RabbitMQ {node.nodename}, leading writeQ (kill -9)"
        fault.bound = REPLICATED_BOUND_S
        node.kill()
        fault.recovered_in = self.recovered(fault.started, fault.bound)
        time.sleep(max(0.0, fault.started + NODE_DOWN_S - time.monotonic()))
        node.start()
        return fault.started

    def _kill_zookeeper_leader(self, fault: Fault) -> float:
        server = self.infra.zookeeper_leader()
        fault.target = f"ZooKeeper server {server.myid}, the leader (kill -9)"
        fault.bound = REPLICATED_BOUND_S
        server.kill()
        fault.recovered_in = self.recovered(fault.started, fault.bound)
        time.sleep(max(0.0, fault.started + NODE_DOWN_S - time.monotonic()))
        server.start()
        return fault.started

    def _kill_postgres(self, fault: Fault) -> float:
        state = self.random.choice(["master", "slave"])
        victim = self.one(state)
        assert victim is not None
        fault.target = f"{state} {victim['id']}'s postmaster"
        postmaster = next(p for p in psutil.Process(victim["pid"]).children()
                          if "postgres" in p.name())
        postmaster.send_signal(signal.SIGKILL)
        return fault.started

    def _disk_full(self, fault: Fault) -> float:
        """A new slave on a small tmpfs, made master half the time, then its disk filled; once
        the worker has left, the space is freed again (its copy stays: a full disk loses no
        data), and the tmpfs stays until the campaign ends."""
        tmpfs = self.infra.base / f"tmpfs-{len(self.faults)}"
        tmpfs.mkdir(parents=True, exist_ok=True)
        # Room for a copy of the data as it is now (it grows as the campaign runs), and a little:
        # the slave must load its copy before its disk is filled.
        size_mb = 96 + 2 * self._largest_copy_mb()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs",
                        str(tmpfs)], check=True, timeout=30)
        self.mounts.append(tmpfs)
        try:
            return self._fill(fault, tmpfs)
        finally:
            (tmpfs / "fill").unlink(missing_ok=True)

    def _largest_copy_mb(self) -> int:
        def size(folder: Path) -> int:
            total = 0
            for path in folder.rglob("*"):
                with contextlib.suppress(OSError):  # a file the server just removed
                    total += path.stat().st_size if path.is_file() else 0
            return total

        sizes = [size(self.stack.data_root() / w["id"]) for w in self.workers()
                 if w["state"] in ("master", "slave")]
        return max(sizes, default=0) // (1 << 20)

    def cleanup(self) -> None:
        """After the stack is down: what the disk faults mounted goes."""
        for tmpfs in self.mounts:
            for proc in processes_of_data_dir(tmpfs / "copy"):
                with_suppressed(proc.kill)
            subprocess.run(["umount", "-l", str(tmpfs)], capture_output=True, timeout=30)
            with_suppressed(tmpfs.rmdir)

    def _fill(self, fault: Fault, tmpfs: Path) -> float:
        self.overrides.write_bytes(orjson.dumps([{"data_dir": str(tmpfs / "copy")}]))
        before = {w["id"] for w in self.workers()}
        self._desired(3)
        try:
            new = wait_for(lambda: next((w for w in self.workers() if w["id"] not in before
                                         and w["state"] == "slave"), None), 90,
                           "the slave on the small disk serves")
            state = "slave"
            if self.random.random() < 0.5:  # make it master: it is then the only ready slave
                others = [w for w in self.workers() if w["id"] != new["id"]]
                for w in sorted(others, key=lambda w: w["state"] == "master"):
                    with_suppressed(lambda w=w: os.kill(w["pid"], signal.SIGKILL))
                wait_for(lambda: any(w["id"] == new["id"] and w["state"] == "master"
                                     for w in self.workers()), 30, "it is elected")
                state = "master"
            fault.target = f"{state} {new['id']}"
            fault.started = time.monotonic()
            subprocess.run(["dd", "if=/dev/zero", f"of={tmpfs / 'fill'}", "bs=1M"],
                           capture_output=True, timeout=60)
            wait_for(lambda: psutil.pid_exists(new["pid"]) is False or
                     psutil.Process(new["pid"]).status() == psutil.STATUS_ZOMBIE, 60,
                     "the worker whose disk is full leaves")
            return fault.started
        finally:
            self.overrides.write_bytes(b"[]")
            self._desired(2)

    def _desired(self, n: int) -> None:
        httpx.put(f"{self.stack.orchestrator_url}/api/v1/cluster/slaves", json={"desired": n},
                  timeout=10)


def with_suppressed(action: Callable[[], Any]) -> None:
    try:
        action()
    except (ProcessLookupError, psutil.NoSuchProcess, OSError):
        pass


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (httpx.HTTPError, ValueError, KeyError, psutil.Error):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
