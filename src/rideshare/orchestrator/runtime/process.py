"""Workers as local child processes of the orchestrator."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from rideshare.config import Settings
from rideshare.localhost import pid_alive
from rideshare.orchestrator.runtime.base import CopyState, WorkerHandle
from rideshare.worker.pgserver import copy_dirs, data_root, kill_stray_postmaster

log = logging.getLogger(__name__)


WORKER = [sys.executable, "-m", "rideshare.worker"]


def runs_worker(pid: int, worker_id: str) -> bool:
    """True if ``pid`` runs the worker program as ``worker_id``."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "rideshare.worker" in cmdline and any(
        a == "--id" and b == worker_id for a, b in zip(cmdline, cmdline[1:], strict=False))


class ProcessRuntime:
    """Each worker a child process; its copy a data directory under the data root."""

    def __init__(self, settings: Settings) -> None:
        self._overrides = Path(settings.test_worker_overrides) if \
            settings.test_worker_overrides else None
        self._log_dir = settings.run_dir / "logs"
        self._data_root = data_root(settings)
        self._handles: dict[str, WorkerHandle] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        # Copies outside the data root (given by the tests' overrides), by copy id: seen,
        # probed, adopted (in place) and dropped like the others.
        self._elsewhere: dict[str, Path] = {}

    def _path(self, copy_id: str) -> Path:
        return self._elsewhere.get(copy_id, self._data_root / copy_id)

    async def start(self, worker_id: str, adopt_copy: str | None = None) -> WorkerHandle:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        command = [*WORKER, "--id", worker_id]
        if adopt_copy in self._elsewhere:  # adopted where it lies
            self._elsewhere[worker_id] = self._elsewhere.pop(adopt_copy)
            command += ["--data-dir", str(self._elsewhere[worker_id])]
        elif adopt_copy:
            command += ["--adopt-copy", adopt_copy]
        override = self._next_override()
        if "data_dir" in override:
            self._elsewhere[worker_id] = Path(override["data_dir"])
            command += ["--data-dir", str(override["data_dir"])]
        with open(self._log_dir / f"worker-{worker_id}.log", "ab") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        handle = WorkerHandle(worker_id, child.pid, time.time())
        self._children[worker_id] = child
        self._handles[worker_id] = handle
        log.info("started worker %s, pid %s%s", worker_id, child.pid,
                 f" (adopting the copy of {adopt_copy})" if adopt_copy else "")
        return handle

    def _next_override(self) -> dict[str, Any]:
        """The tests' settings for this worker, if they left any (``test_worker_overrides``)."""
        if self._overrides is None or not self._overrides.exists():
            return {}
        pending = orjson.loads(self._overrides.read_bytes() or b"[]")
        if not pending:
            return {}
        self._overrides.write_bytes(orjson.dumps(pending[1:]))
        return dict(pending[0])

    async def adopt(self, worker_id: str, pid: int, started_at: float) -> WorkerHandle | None:
        """The process must be that worker's, not whatever now runs under a reused PID."""
        if not pid_alive(pid) or not runs_worker(pid, worker_id):
            return None
        handle = WorkerHandle(worker_id, pid, started_at)
        self._handles[worker_id] = handle
        return handle

    def _signal(self, worker_id: str, sig: signal.Signals) -> None:
        handle = self._handles.get(worker_id)
        if handle is not None:
            try:
                os.kill(handle.pid, sig)
            except ProcessLookupError:
                pass

    async def kill(self, worker_id: str) -> None:
        self._signal(worker_id, signal.SIGKILL)
        child = self._children.get(worker_id)
        if child is not None:
            try:
                await asyncio.to_thread(child.wait, 5)
            except subprocess.TimeoutExpired:
                log.error("worker %s did not die after SIGKILL", worker_id)

    async def stop(self, worker_id: str) -> None:
        self._signal(worker_id, signal.SIGTERM)

    def _running(self, worker_id: str) -> bool:
        child = self._children.get(worker_id)
        if child is not None:
            return child.poll() is None
        return pid_alive(self._handles[worker_id].pid)

    async def reap(self) -> list[str]:
        ended = [wid for wid in self._handles if not self._running(wid)]
        for wid in ended:
            self._handles.pop(wid)
            self._children.pop(wid, None)
            # Its server dies with it (a parent-death signal); should one outlive it anyway:
            await asyncio.to_thread(kill_stray_postmaster, self._path(wid))
        return ended

    def alive(self) -> dict[str, WorkerHandle]:
        return {wid: h for wid, h in self._handles.items() if self._running(wid)}

    async def copies(self) -> list[str]:
        alive = self.alive()
        here = [p.name for p in copy_dirs(self._data_root) if p.name not in alive]
        return here + [c for c, p in self._elsewhere.items()
                       if c not in alive and (p / "PG_VERSION").exists()]

    async def probe(self, copy_id: str) -> CopyState | None:
        code, out = await _run_worker(["--probe-copy", str(self._path(copy_id))], 90)
        if code != 0:
            log.error("the copy of %s could not be read (it is kept): %s", copy_id, out[-500:])
            return None
        state = orjson.loads(out.strip().splitlines()[-1])
        return CopyState(state["epoch"], state["position"])

    async def drop_copy(self, copy_id: str) -> None:
        code, out = await _run_worker(["--drop-copy", str(self._path(copy_id))], 60)
        self._elsewhere.pop(copy_id, None)
        if code != 0:
            log.error("removing the copy of %s failed: %s", copy_id, out[-500:])


async def _run_worker(args: list[str], timeout_s: float) -> tuple[int, str]:
    """Run the worker program for a one-off task on a copy; (exit code, its output)."""
    proc = await asyncio.create_subprocess_exec(
        *WORKER, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"no result within {timeout_s:.0f} s"
    return proc.returncode or 0, (out.decode(errors="replace") if proc.returncode == 0
                                  else err.decode(errors="replace"))
