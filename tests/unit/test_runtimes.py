"""The runtimes' bookkeeping when the world misbehaves: a PID reused by another process after an
orchestrator restart, and a kill that the Docker engine fails to carry out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rideshare.config import Settings
from rideshare.orchestrator.runtime.process import ProcessRuntime


async def test_a_reused_pid_is_not_taken_for_a_worker(tmp_path: Path) -> None:
    runtime = ProcessRuntime(Settings(run_dir=tmp_path))
    assert await runtime.adopt("w1234", os.getpid(), 0.0) is None, "this process is not worker w1234"
    assert runtime.alive() == {}


async def test_a_running_worker_is_adopted_by_its_pid_and_id(tmp_path: Path) -> None:
    # A stand-in with the worker's command line (it only sleeps).
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "rideshare.worker", "--id", "w1234"])
    try:
        runtime = ProcessRuntime(Settings(run_dir=tmp_path))
        assert await runtime.adopt("w9999", fake.pid, 0.0) is None, "another worker's id"
        handle = await runtime.adopt("w1234", fake.pid, 5.0)
        assert handle is not None and handle.pid == fake.pid
    finally:
        fake.kill()
        fake.wait()


class FailingEngine:
    """The slice of the Docker SDK the runtime calls, with a kill that fails."""

    def __init__(self, kill_error: Exception) -> None:
        self.kill_error = kill_error
        self.api = self
        self.containers_running = {"c1": True}

    def ping(self) -> bool:
        return True

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Id": "c1", "State": "running", "Labels": {}}]

    def events(self, **_: Any) -> Any:
        stop = threading.Event()
        stop.wait(30)
        return iter(())

    def kill(self, cid: str, signal: str) -> None:
        raise self.kill_error

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"State": {"Running": self.containers_running[cid], "Pid": 42}}

    def close(self) -> None:
        pass


async def test_a_worker_whose_kill_failed_is_still_alive_in_the_docker_runtimes_view(tmp_path):
    pytest.importorskip("docker")
    from rideshare.orchestrator.runtime.base import WorkerHandle
    from rideshare.orchestrator.runtime.docker import DockerRuntime

    engine = FailingEngine(RuntimeError("the engine timed out"))
    settings = Settings(run_dir=tmp_path, worker_image="img", docker_network="host",
                        docker_stack="rt")
    runtime = DockerRuntime(settings, client=engine)
    runtime._handles["w1"] = WorkerHandle("w1", 42, time.time())
    runtime._containers["w1"] = "c1"
    await runtime.kill("w1")
    assert "w1" in runtime.alive(), "a kill that failed does not make the worker dead"
    engine.containers_running["c1"] = False
    await runtime.kill("w1")
    assert "w1" not in runtime.alive(), "once it is seen stopped, it is dead"
