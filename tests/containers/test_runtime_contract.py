"""One test of the worker runtime interface (runtime/base.py), run against both runtimes: the
``process`` one (child processes) and the ``docker`` one (containers from our image, on the host's
network so that they reach this machine's PostgreSQL, RabbitMQ and ZooKeeper on 127.0.0.1).

Real workers, real servers: a master is started (on a fresh copy), a slave is started and loads
its snapshot from it; both are alive with host PIDs, each with a PostgreSQL server of its own; the
master is killed (SIGKILL) and reaped, and its server goes with it; the slave is stopped gracefully
and reaped; both copies are left on disk, probed, and the master's is adopted by a new worker;
then every copy is dropped. For docker, every container is gone at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.localhost import pid_alive
from rideshare.orchestrator.api import make_runtime
from rideshare.orchestrator.runtime.base import CopyState
from tests.support import ROOT, wait_until, wait_until_async


def host_cmdline(pid: int) -> str:
    """The command line of host process ``pid`` ("" when it does not run)."""
    if not pid_alive(pid):
        return ""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def new_worker_id() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


def server_of(pid: int) -> list[int]:
    """The postmasters that are children of host process ``pid``."""
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    return [c.pid for c in children if "postgres -D" in host_cmdline(c.pid)]


async def reaped_now(runtime: Any, reaped: list[str], worker_id: str) -> bool:
    """Reap once, into ``reaped``; True once ``worker_id`` is among them."""
    reaped.extend(await runtime.reap())
    return worker_id in reaped


@pytest.fixture(params=["process", "docker"])
async def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    name = f"rt{uuid.uuid4().hex[:8]}"
    env = {
        "RIDESHARE_RUNTIME": request.param,
        "RIDESHARE_QUEUE_PREFIX": f"{name}.",
        "RIDESHARE_ZK_ROOT": f"/rideshare-test/{name}",
        "RIDESHARE_RUN_DIR": str(tmp_path),
    }
    client = None
    if request.param == "docker":
        client = request.getfixturevalue("docker_engine")
        env.update(RIDESHARE_WORKER_IMAGE=request.getfixturevalue("app_image"),
                   RIDESHARE_DOCKER_NETWORK="host", RIDESHARE_DOCKER_STACK=name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = Settings()
    runtime = make_runtime(settings)
    dcs = Coordinator(settings.zk_hosts, settings.zk_root, settings.zk_session_timeout_s)
    await dcs.start()
    try:
        yield {"runtime": runtime, "settings": settings, "dcs": dcs, "client": client,
               "name": name, "kind": request.param}
    finally:
        for worker_id in list(runtime.alive()):
            await runtime.kill(worker_id)
        await runtime.reap()
        await dcs.stop()
        if hasattr(runtime, "close"):
            runtime.close()
        if client is not None:
            for container in client.containers.list(
                    all=True, filters={"label": f"io.rideshare.stack={name}"}):
                container.remove(force=True)
        subprocess.run([sys.executable, str(ROOT / "tests" / "cleanup.py")], timeout=60,
                       env={**os.environ, **env}, check=False)
        get_settings.cache_clear()


async def test_runtime_contract(case: dict[str, Any]) -> None:
    runtime, dcs = case["runtime"], case["dcs"]

    async def role(worker_id: str) -> str | None:
        return (await dcs.workers()).get(worker_id, {}).get("role")

    # A master: the epoch names it before it starts; it adopts (here: creates) a database.
    master = new_worker_id()
    assert await dcs.advance_epoch(await dcs.epoch(), master) is not None
    handle = await runtime.start(master)
    assert handle.worker_id == master and handle.pid > 0
    await wait_until_async(lambda: _is(role(master), "master"), 90, "the master serves")
    assert runtime.alive()[master].pid == handle.pid
    assert "rideshare.worker" in host_cmdline(handle.pid), "the pid is the worker's host PID"

    # A slave: loads a snapshot from the master, then serves reads.
    slave = new_worker_id()
    slave_handle = await runtime.start(slave)
    await wait_until_async(lambda: _is(role(slave), "slave"), 90, "the slave serves")
    alive = runtime.alive()
    assert set(alive) == {master, slave}
    assert alive[slave].pid == slave_handle.pid != handle.pid
    assert "rideshare.worker" in host_cmdline(slave_handle.pid)
    servers = {w: wait_until(lambda: server_of(alive[w].pid), 30, f"{w}'s server") for w in alive}
    assert all(len(s) == 1 for s in servers.values()), "each worker has one server of its own"
    assert await runtime.copies() == [], "copies of running workers are not offered"
    assert await runtime.reap() == []

    # Crash: SIGKILL. It is no longer alive at once, its process is gone, reaping returns it once.
    await runtime.kill(master)
    assert master not in runtime.alive()
    wait_until(lambda: not host_cmdline(handle.pid), 10, "the killed worker's process is gone")
    wait_until(lambda: not host_cmdline(servers[master][0]), 5,
               "the killed worker's server is gone within 5 s")
    reaped: list[str] = []
    await wait_until_async(lambda: reaped_now(runtime, reaped, master), 15,
                           "the killed master is reaped")
    assert reaped == [master]
    assert await runtime.reap() == []
    assert set(runtime.alive()) == {slave}

    # A graceful stop: the worker leaves ZooKeeper itself and exits; then it is reaped.
    await runtime.stop(slave)
    reaped = []
    await wait_until_async(lambda: reaped_now(runtime, reaped, slave), 60,
                           "the stopped slave is reaped")
    assert reaped == [slave]
    assert runtime.alive() == {}
    assert not host_cmdline(slave_handle.pid)
    assert await role(slave) is None, "a graceful stop removes the worker's znode"

    # Their copies stay on disk; both hold the one write-free log position; one is adopted.
    assert sorted(await runtime.copies()) == sorted([master, slave])
    states = {c: await runtime.probe(c) for c in (master, slave)}
    assert all(isinstance(s, CopyState) for s in states.values()), states
    heir = new_worker_id()
    assert await dcs.advance_epoch(await dcs.epoch(), heir) is not None
    heir_handle = await runtime.start(heir, adopt_copy=master)
    await wait_until_async(lambda: _is(role(heir), "master"), 90, "the heir serves")
    assert await runtime.copies() == [slave], "the adopted copy is in use"
    await runtime.kill(heir)
    await wait_until_async(lambda: reaped_now(runtime, [], heir), 15, "the heir is reaped")
    assert not host_cmdline(heir_handle.pid)

    for copy_id in await runtime.copies():
        await runtime.drop_copy(copy_id)
    assert await runtime.copies() == []

    if case["kind"] == "docker":
        client = case["client"]
        wait_until(lambda: not client.containers.list(
            all=True, filters={"label": f"io.rideshare.stack={case['name']}"}), 15,
            "no container of this runtime is left (workers and one-shot database drops)")


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected
