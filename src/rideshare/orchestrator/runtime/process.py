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

from rideshare.orchestrator.runtime.base import WorkerHandle

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class ProcessRuntime:
    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._handles: dict[str, WorkerHandle] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _command(self, worker_id: str, adopt: bool) -> list[str]:
        return [sys.executable, "-m", "rideshare.worker", "--id", worker_id,
                *(["--adopt"] if adopt else [])]

    async def start(self, worker_id: str, adopt: bool) -> WorkerHandle:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_dir / f"worker-{worker_id}.log", "ab") as out:
            child = subprocess.Popen(self._command(worker_id, adopt), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        handle = WorkerHandle(worker_id, child.pid, time.time())
        self._children[worker_id] = child
        self._handles[worker_id] = handle
        log.info("started worker %s, pid %s%s", worker_id, child.pid,
                 " (adopting)" if adopt else "")
        return handle

    def adopt(self, worker_id: str, pid: int, started_at: float) -> WorkerHandle | None:
        if not pid_alive(pid):
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

    def kill(self, worker_id: str) -> None:
        self._signal(worker_id, signal.SIGKILL)
        child = self._children.get(worker_id)
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("worker %s did not die after SIGKILL", worker_id)

    def stop(self, worker_id: str) -> None:
        self._signal(worker_id, signal.SIGTERM)

    def _running(self, worker_id: str) -> bool:
        child = self._children.get(worker_id)
        if child is not None:
            return child.poll() is None
        return pid_alive(self._handles[worker_id].pid)

    def reap(self) -> list[str]:
        ended = [wid for wid in self._handles if not self._running(wid)]
        for wid in ended:
            self._handles.pop(wid)
            self._children.pop(wid, None)
        return ended

    def alive(self) -> dict[str, WorkerHandle]:
        return {wid: h for wid, h in self._handles.items() if self._running(wid)}

    async def drop_database(self, worker_id: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rideshare.worker", "--drop-database", worker_id,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("dropping the database of %s timed out", worker_id)
            return
        if proc.returncode:
            log.error("dropping the database of %s failed: %s", worker_id, err.decode()[-500:])
