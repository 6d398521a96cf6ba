"""What the integration and fault tests share: a real stack on free ports, and polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from rideshare.devstack import StackPorts, stack_environment
from rideshare.localhost import environment_of

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
RIDESHARE = [sys.executable, "-m", "rideshare.cli"]


def wait_until(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after the bound."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(every_s)
    raise AssertionError(f"{what}: not true after {timeout_s} s (last: {last!r})")


async def wait_until_async(check: Callable[[], Awaitable[T]], timeout_s: float, what: str,
                           every_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        await asyncio.sleep(every_s)
    raise AssertionError(f"{what}: not true after {timeout_s} s (last: {last!r})")


@dataclass
class RunningStack:
    """One RideShare stack of our own: its own ports, queues, ZooKeeper root and databases."""

    run_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        ports = StackPorts.free()
        self.env = stack_environment(self.name, self.run_dir, "/rideshare-test", ports,
                                     self.overrides)
        self.gateway_url = ports.url("gateway")
        self.orchestrator_url = ports.url("orchestrator")
        self.users_url = ports.url("users")
        self.rides_url = ports.url("rides")

    def cli(self, *args: str, timeout_s: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RIDESHARE, *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout_s)

    def up(self) -> None:
        done = self.cli("up", "--detach")
        if done.returncode != 0:
            raise RuntimeError(f"rideshare up failed:\n{done.stdout}\n{done.stderr}\n"
                               f"{self.logs()}")

    def down(self) -> None:
        done = self.cli("down")
        assert done.returncode == 0, done.stdout + done.stderr

    def logs(self) -> str:
        out = []
        for path in sorted((self.run_dir / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        stack_log = self.run_dir / "stack.log"
        if stack_log.exists():
            out.append("--- stack.log\n" + stack_log.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def state(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "stack.json").read_text())

    def restart_service(self, name: str) -> None:
        """SIGTERM one service; the supervisor starts it again; wait until it answers."""
        old = self.state()["parts"][name]["pid"]
        os.kill(old, signal.SIGTERM)
        url = {"users": self.users_url, "rides": self.rides_url}[name]
        wait_until(lambda: self.state()["parts"][name]["pid"] != old, 30, f"{name} restarted")
        wait_until(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 30,
                   f"{name} answers again")

    def settings(self) -> Any:
        """This stack's settings, as its parts read them from its environment."""
        from rideshare.config import Settings

        return Settings(**{k.removeprefix("RIDESHARE_").lower(): v for k, v in self.env.items()
                           if k.startswith("RIDESHARE_")})

    def data_root(self) -> Path:
        from rideshare.worker.pgserver import data_root

        return data_root(self.settings())

    def cluster(self) -> dict[str, Any]:
        return httpx.get(f"{self.orchestrator_url}/api/v1/cluster", timeout=5).json()

    def leftovers(self) -> list[Any]:
        """Processes of this stack still running (after ``down``, there should be none)."""
        return processes_of_stack(self.run_dir)

    def cleanup(self) -> None:
        """Kill what is left of this stack's processes; remove its queues, ZooKeeper nodes and
        copies."""
        for proc in self.leftovers():
            with contextlib.suppress(Exception):
                proc.kill()
        subprocess.run([sys.executable, str(ROOT / "tests" / "cleanup.py")], env=self.env,
                       timeout=60, check=False)


def worker_copies(stack: RunningStack) -> dict[str, tuple[int, str]]:
    """Each live worker's (log position, checksum of every table it keeps: the data, the id
    counters and the remembered write ids), read straight from its own PostgreSQL server: how a
    test proves that copies agree."""
    import psycopg

    from rideshare.worker.pgserver import conninfo
    from rideshare.worker.store import SNAPSHOT_TABLES

    out = {}
    root = stack.data_root()
    for worker in stack.cluster()["workers"]:
        if worker["state"] not in ("master", "slave"):
            continue  # still starting (its server may not run yet) or retiring
        with psycopg.connect(conninfo(root / worker["id"]), connect_timeout=5) as conn:
            position = conn.execute("SELECT position FROM log_state").fetchone()[0]
            parts = []
            for name in SNAPSHOT_TABLES:
                row = conn.execute(
                    f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)),"
                    f" '') FROM {name} t").fetchone()
                parts.append(f"{name}:{row[0]}:{row[1]}")
            out[worker["id"]] = (position, ";".join(parts))
    return out


def copies_agree(stack: RunningStack) -> dict[str, tuple[int, str]] | None:
    """The copies when every worker holds the same position and the same data, else None."""
    import psycopg

    try:
        copies = worker_copies(stack)
    except psycopg.OperationalError:  # a worker went away as we looked
        return None
    return copies if len(set(copies.values())) == 1 else None


class Writers:
    """Clients writing rides continuously; each write has its own id and is retried with that
    id until acknowledged, and every acknowledgement is recorded."""

    def __init__(self, stack: RunningStack, first_key: int, clients: int = 8,
                 creator: str = "driver") -> None:
        self.stack = stack
        self.first_key = self.next_key = first_key
        self.clients = clients
        self.creator = creator
        self.acked: dict[int, int] = {}  # key -> ride id
        self.ack_log: list[tuple[float, int]] = []  # (monotonic time, epoch) of every ack
        self.stop = threading.Event()
        self.errors: list[str] = []

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            key, self.next_key = self.next_key, self.next_key + 1
            body = {"id": f"ride-key-{key}", "ops": [{
                "op": "insert", "table": "rides", "values": {
                    "created_by": self.creator, "ride_time": key, "source": 1, "destination": 2}}]}
            give_up = time.monotonic() + 60
            while time.monotonic() < give_up:
                try:
                    r = await client.post("/api/v1/db/write", json=body)
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)  # the orchestrator restarting: retry, same id
                    continue
                if r.status_code == 200:
                    answer = r.json()
                    self.acked[key] = answer["results"][0]["generated"]["ride_id"]
                    self.ack_log.append((time.monotonic(), answer["epoch"]))
                    break
                if r.status_code != 503:
                    self.errors.append(f"{r.status_code} {r.text}")
                    break
                await asyncio.sleep(0.05)
            else:
                self.errors.append(f"key {key}: not acknowledged within 60 s")

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.stack.orchestrator_url, timeout=60) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

    def __enter__(self) -> Writers:
        self._thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(60)


def check_writes(stack: RunningStack, writers: Writers) -> list[dict[str, Any]]:
    """Every acknowledged write is on every worker, once, with the ride id it was given."""
    copies = wait_until(lambda: copies_agree(stack), 60, "every worker holds the same data")
    assert len(copies) >= 2
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        rows = db.post("/api/v1/db/read", json={
            "table": "rides", "columns": ["ride_id", "ride_time"],
            "where": {"ride_time": {"ge": writers.first_key}}, "limit": 10000}).json()["rows"]
    by_key: dict[int, list[int]] = {}
    for row in rows:
        by_key.setdefault(row["ride_time"], []).append(row["ride_id"])
    assert [k for k in writers.acked if k not in by_key] == [], "every acknowledged write is kept"
    assert {k: v for k, v in by_key.items() if len(v) > 1} == {}, "no write is applied twice"
    assert all(by_key[k] == [ride_id] for k, ride_id in writers.acked.items())
    assert writers.errors == [], writers.errors[:5]
    return rows


def servers_under(root: Path) -> dict[Path, Any]:
    """The PostgreSQL postmasters whose data directory is under ``root``, by data directory."""
    import psutil

    found = {}
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or len(cmdline) < 3:
            continue
        if cmdline[0].endswith("/postgres") and cmdline[1] == "-D" and \
                Path(cmdline[2]).parent == root:
            found[Path(cmdline[2])] = proc
    return found


def processes_of_data_dir(data_dir: Path) -> list[Any]:
    """Every live process of the server on ``data_dir``: the postmaster and each of its backends
    (PostgreSQL's processes work in their data directory, orphans included)."""
    import psutil

    out = []
    for proc in psutil.process_iter(["name", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.cwd() == str(data_dir):
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def processes_of_stack(run_dir: Path) -> list[Any]:
    """Every process started for the stack whose run folder is ``run_dir`` (its parts and
    workers carry it in their environment), zombies aside."""
    import psutil

    return [proc for proc in psutil.process_iter(["status"])
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.pid != os.getpid()
            and environment_of(proc).get("RIDESHARE_RUN_DIR") == str(run_dir)]
