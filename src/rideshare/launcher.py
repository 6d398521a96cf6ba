"""``rideshare up``: start the parts in order, watch them, restart one that dies, stop them all.

The parts are child processes: the orchestrator (which starts the workers itself), the users and
rides services, and our own nginx as the gateway. The stack's state (pids, addresses) is written to
``<run_dir>/stack.json`` so that ``down`` and ``status`` can find it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from rideshare.config import Settings
from rideshare.localhost import environment_of, read_json_object

log = logging.getLogger("rideshare.launcher")


@dataclass
class Part:
    name: str
    command: list[str]
    ready_url: str | None  # polled until it answers 200; None: the port only
    port: int
    process: subprocess.Popen[bytes] | None = None


STACK_MARK = "RIDESHARE_STACK_ID"


@dataclass
class Stack:
    settings: Settings
    parts: list[Part] = field(default_factory=list)
    stopping: bool = False
    stack_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def state_file(self) -> Path:
        return self.settings.run_dir / "stack.json"

    def _uvicorn(self, factory: str, port: int, processes: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--factory", factory, "--host",
                self.settings.host, "--port", str(port), "--no-access-log",
                "--workers", str(processes), "--timeout-graceful-shutdown", "20",
                "--timeout-keep-alive", "75"]

    def build(self) -> None:
        from rideshare.gateway.render import nginx_command, render_config

        s = self.settings
        base = f"http://{s.host}"
        n = s.service_processes
        conf = render_config(s, s.run_dir, [f"{s.host}:{s.users_port}"],
                             [f"{s.host}:{s.rides_port}"])
        self.parts = [
            Part("orchestrator", self._uvicorn("rideshare.orchestrator.api:create_app",
                                               s.orchestrator_port, 1),
                 f"{base}:{s.orchestrator_port}/health", s.orchestrator_port),
            Part("users", self._uvicorn("rideshare.users.app:create_app", s.users_port, n),
                 f"{base}:{s.users_port}/health", s.users_port),
            Part("rides", self._uvicorn("rideshare.rides.app:create_app", s.rides_port, n),
                 f"{base}:{s.rides_port}/health", s.rides_port),
            Part("gateway", nginx_command(conf), f"{base}:{s.gateway_port}/health",
                 s.gateway_port),
        ]

    def _spawn(self, part: Part) -> None:
        logs = self.settings.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{part.name}.log", "ab") as out:
            part.process = subprocess.Popen(part.command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        log.info("%s started (pid %s)", part.name, part.process.pid)

    def _wait_ready(self, part: Part, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert part.process is not None
            if part.process.poll() is not None:
                raise RuntimeError(f"{part.name} exited with {part.process.returncode}; see "
                                   f"{self.settings.run_dir / 'logs' / (part.name + '.log')}")
            try:
                if part.ready_url and httpx.get(part.ready_url, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{part.name} was not ready after {timeout_s:.0f} s")

    def write_state(self, ready: bool) -> None:
        s = self.settings
        state = {
            "supervisor_pid": os.getpid(), "ready": ready,
            "gateway_url": f"http://{s.host}:{s.gateway_port}",
            "orchestrator_url": f"http://{s.host}:{s.orchestrator_port}",
            "parts": {p.name: {"pid": p.process.pid if p.process else None, "port": p.port}
                      for p in self.parts},
        }
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def start(self, timeout_s: float = 90.0) -> None:
        # Every process of this stack, workers included, carries this mark: what is left of it
        # at the end (a worker started by an orchestrator that was since killed) is found by it.
        os.environ[STACK_MARK] = self.stack_id
        self.build()
        for part in self.parts:
            self._spawn(part)
            self._wait_ready(part, timeout_s)
        self.write_state(ready=True)

    def supervise(self) -> None:
        """Restart a part that dies, until asked to stop."""
        while not self.stopping:
            for part in self.parts:
                if part.process is not None and part.process.poll() is not None \
                        and not self.stopping:
                    log.warning("%s exited with %s; restarting it", part.name,
                                part.process.returncode)
                    self._spawn(part)
                    self.write_state(ready=True)
            time.sleep(0.2)

    def stop(self, timeout_s: float = 40.0) -> None:
        """Stop in reverse order; the orchestrator stops its workers gracefully, data stays."""
        self.stopping = True
        for part in reversed(self.parts):
            if part.process is None or part.process.poll() is not None:
                continue
            part.process.send_signal(signal.SIGQUIT if part.name == "gateway" else signal.SIGTERM)
            try:
                part.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0f s; killing it", part.name, timeout_s)
                part.process.kill()
                part.process.wait(5)
        self._stop_stragglers()
        self.state_file.unlink(missing_ok=True)

    def _stop_stragglers(self) -> None:
        """Processes of this stack that outlived its parts (a worker that had left the cluster,
        started by an orchestrator since replaced): SIGTERM, then SIGKILL."""
        left = [proc for proc in psutil.process_iter() if proc.pid != os.getpid()
                and environment_of(proc).get(STACK_MARK) == self.stack_id]
        for proc in left:
            log.warning("stopping pid %s, left from this stack", proc.pid)
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=15)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def read_state(settings: Settings) -> dict[str, Any] | None:
    return read_json_object(settings.run_dir / "stack.json")
