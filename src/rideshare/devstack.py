"""A RideShare stack of one's own, for the tests and the benchmarks: free ports, and queue,
ZooKeeper and data names no other stack uses, so it never touches anyone's data and leaves
nothing behind (``stack_environment``, ``remove_names``).

``OwnStack`` (the benchmarks') runs ``python -m rideshare.cli up`` (what ``up --detach`` runs in
the background) in a session of its own and keeps that supervisor's pid: a Ctrl-C at any moment,
even before the stack is ready, still stops it. Then it stops it as ``rideshare down`` does, and
removes the queues, znodes and copies. The tests' ``RunningStack`` (``tests/support.py``) is the
same stack run through ``rideshare up --detach``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rideshare.config import Settings
from rideshare.localhost import free_port, read_json_object

CLI = [sys.executable, "-m", "rideshare.cli"]


@dataclass(frozen=True)
class StackPorts:
    gateway: int
    users: int
    rides: int
    orchestrator: int

    @classmethod
    def free(cls) -> StackPorts:
        return cls(free_port(), free_port(), free_port(), free_port())

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{getattr(self, part)}"


def stack_environment(name: str, run_dir: Path, zk_parent: str, ports: StackPorts,
                      overrides: dict[str, str]) -> dict[str, str]:
    """The environment of a stack of one's own, on top of this process's: its ports, and names
    (queue prefix, ZooKeeper root, run folder and so data folder) that are its alone."""
    return {
        **os.environ,
        "RIDESHARE_HOST": "127.0.0.1",
        "RIDESHARE_GATEWAY_PORT": str(ports.gateway),
        "RIDESHARE_USERS_PORT": str(ports.users),
        "RIDESHARE_RIDES_PORT": str(ports.rides),
        "RIDESHARE_ORCHESTRATOR_PORT": str(ports.orchestrator),
        "RIDESHARE_GATEWAY_URL": ports.url("gateway"),
        "RIDESHARE_ORCHESTRATOR_URL": ports.url("orchestrator"),
        "RIDESHARE_QUEUE_PREFIX": f"{name}.",
        "RIDESHARE_ZK_ROOT": f"{zk_parent}/{name}",
        "RIDESHARE_RUN_DIR": str(run_dir),
        **overrides,
    }


@dataclass
class OwnStack:
    """One stack on loopback, named ``bench<hex>``; ``overrides`` are extra RIDESHARE_* vars."""

    overrides: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: "bench" + uuid.uuid4().hex[:8])
    supervisor: subprocess.Popen[bytes] | None = None
    failed: bool = False  # keep the run directory (its logs say why)

    def __post_init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"rideshare-{self.name}-"))
        ports = StackPorts.free()
        self.gateway_url = ports.url("gateway")
        self.orchestrator_url = ports.url("orchestrator")
        # A benchmark measures one topology: no scaling window may end during the run unless
        # the caller's environment asks for one (RIDESHARE_SCALE_INTERVAL set).
        quiet = {"RIDESHARE_SCALE_INTERVAL": os.environ.get("RIDESHARE_SCALE_INTERVAL", "86400")}
        self.env = stack_environment(self.name, self.run_dir, "/rideshare-bench", ports,
                                     {**quiet, **self.overrides})

    @property
    def settings(self) -> Settings:
        """This stack's names and servers (for cleanup), as its processes see them."""
        return Settings.model_validate({k.removeprefix("RIDESHARE_").lower(): v
                                        for k, v in self.env.items()
                                        if k.startswith("RIDESHARE_")})

    def state(self) -> dict[str, Any] | None:
        return read_json_object(self.run_dir / "stack.json")

    def up(self, timeout_s: float = 150.0) -> None:
        """Start the stack; return once every part answers (``stack.json`` says ready)."""
        with open(self.run_dir / "stack.log", "ab") as out:
            self.supervisor = subprocess.Popen([*CLI, "up", "--timeout", str(timeout_s)],
                                               env=self.env, stdout=out,
                                               stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if state and state.get("ready") and state.get("supervisor_pid") == self.supervisor.pid:
                return
            if self.supervisor.poll() is not None:
                self.failed = True
                raise RuntimeError(f"the stack did not start; see {self.run_dir}/stack.log and "
                                   f"{self.run_dir}/logs/\n{self.log_tail()}")
            time.sleep(0.2)
        self.failed = True
        raise RuntimeError(f"the stack was not ready after {timeout_s:.0f} s; see {self.run_dir}")

    def log_tail(self, chars: int = 2000) -> str:
        path = self.run_dir / "stack.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def down(self, timeout_s: float = 60.0) -> None:
        """What ``rideshare down`` does (SIGTERM to the supervisor, which stops the parts, which
        stop the workers gracefully), but waiting on our own child: ``down`` polls with
        ``kill(pid, 0)``, which a child of ours that is dead but not yet reaped still passes."""
        if self.supervisor is None or self.supervisor.poll() is not None:
            return
        self.supervisor.send_signal(signal.SIGTERM)
        try:
            self.supervisor.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.supervisor.kill()
            self.supervisor.wait(10)

    def cleanup(self) -> None:
        """Remove this stack's queues, ZooKeeper subtree and databases (each step best effort)."""
        asyncio.run(remove_names(self.settings))

    def close(self, console: Console) -> None:
        """``down`` then ``cleanup``, shielded from a second Ctrl-C so nothing is left behind;
        the run directory (logs) goes too, unless the stack failed to start."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            console.print(f"stopping the benchmark's stack {self.name} …")
            self.down()
            self.cleanup()
            if self.failed:
                console.print(f"its logs are kept in {self.run_dir}")
            else:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)


async def remove_names(s: Settings) -> None:
    """Delete the queues and exchanges, the ZooKeeper subtree and the workers' copies of the
    stack that ``s`` describes."""
    import aio_pika
    from kazoo.client import KazooClient

    from rideshare.folders import remove_folder
    from rideshare.protocol import queue_names
    from rideshare.worker.pgserver import copy_dirs, data_root, remove_copy

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(s.amqp_url_list[0], timeout=10)
        async with connection:
            for name in queue_names(s.queue_prefix).values():
                for delete in ("queue_delete", "exchange_delete"):
                    with contextlib.suppress(Exception):
                        channel = await connection.channel()
                        await getattr(channel, delete)(name)
    with contextlib.suppress(Exception):
        zk = KazooClient(hosts=s.zk_hosts, timeout=5)
        zk.start(10)
        try:
            zk.delete(s.zk_root, recursive=True)
        finally:
            zk.stop()
    root = data_root(s)
    for copy in copy_dirs(root):
        remove_copy(copy)
    remove_folder(root)
