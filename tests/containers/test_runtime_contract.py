"""One test of the worker runtime interface (runtime/base.py), run against both runtimes: the
``process`` one (child processes) and the ``docker`` one (containers from our image, on the host's
network so that they reach this machine's PostgreSQL, RabbitMQ and ZooKeeper on 127.0.0.1).

Real workers, real servers: a master is started (it adopts a fresh database), a slave is started
and loads its snapshot from it; both are alive with host PIDs; the master is killed (SIGKILL) and
reaped; the slave is stopped gracefully and reaped; both databases are dropped. For docker, every
container is gone at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rideshare.config import Settings, get_settings
from rideshare.dcs import Coordinator
from rideshare.orchestrator.api import make_runtime
from rideshare.worker.store import database_name
from tests.support import ROOT, wait_until, wait_until_async


def host_cmdline(pid: int) -> str:
    """The command line of host process ``pid`` ("" when it does not run)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return ""
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return ""


def new_worker_id() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


def databases(settings: Settings) -> set[str]:
    with psycopg.connect(settings.pg_dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                            (settings.db_prefix + "_",)).fetchall()
    return {name for (name,) in rows}


@pytest.fixture(params=["process", "docker"])
async def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    name = f"rt{uuid.uuid4().hex[:8]}"
    env = {
        "RIDESHARE_RUNTIME": request.param,
        "RIDESHARE_QUEUE_PREFIX": f"{name}.",
        "RIDESHARE_ZK_ROOT": f"/rideshare-test/{name}",
        "RIDESHARE_DB_PREFIX": f"rs{name}",
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
            runtime.kill(worker_id)
        runtime.reap()
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
    runtime, settings, dcs = case["runtime"], case["settings"], case["dcs"]

    async def role(worker_id: str) -> str | None:
        return (await dcs.workers()).get(worker_id, {}).get("role")

    # A master: the epoch names it before it starts; it adopts (here: creates) a database.
    master = new_worker_id()
    assert await dcs.advance_epoch(await dcs.epoch(), master) is not None
    handle = await runtime.start(master, adopt=True)
    assert handle.worker_id == master and handle.pid > 0
    await wait_until_async(lambda: _is(role(master), "master"), 90, "the master serves")
    assert runtime.alive()[master].pid == handle.pid
    assert "rideshare.worker" in host_cmdline(handle.pid), "the pid is the worker's host PID"

    # A slave: loads a snapshot from the master, then serves reads.
    slave = new_worker_id()
    slave_handle = await runtime.start(slave, adopt=False)
    await wait_until_async(lambda: _is(role(slave), "slave"), 90, "the slave serves")
    alive = runtime.alive()
    assert set(alive) == {master, slave}
    assert alive[slave].pid == slave_handle.pid != handle.pid
    assert "rideshare.worker" in host_cmdline(slave_handle.pid)
    dbs = {database_name(settings.db_prefix, w) for w in (master, slave)}
    assert dbs <= databases(settings), "each worker has its own database"
    assert runtime.reap() == []

    # Crash: SIGKILL. It is no longer alive at once, its process is gone, reaping returns it once.
    runtime.kill(master)
    assert master not in runtime.alive()
    wait_until(lambda: not host_cmdline(handle.pid), 10, "the killed worker's process is gone")
    reaped: list[str] = []
    wait_until(lambda: reaped.extend(runtime.reap()) or master in reaped, 15,
               "the killed master is reaped")
    assert reaped == [master]
    assert runtime.reap() == []
    assert set(runtime.alive()) == {slave}

    # A graceful stop: the worker leaves ZooKeeper itself and exits; then it is reaped.
    runtime.stop(slave)
    reaped = []
    wait_until(lambda: reaped.extend(runtime.reap()) or slave in reaped, 60,
               "the stopped slave is reaped")
    assert reaped == [slave]
    assert runtime.alive() == {}
    assert not host_cmdline(slave_handle.pid)
    assert await role(slave) is None, "a graceful stop removes the worker's znode"

    # Their databases go.
    for worker_id in (master, slave):
        await runtime.drop_database(worker_id)
    assert not dbs & databases(settings)

    if case["kind"] == "docker":
        client = case["client"]
        wait_until(lambda: not client.containers.list(
            all=True, filters={"label": f"io.rideshare.stack={case['name']}"}), 15,
            "no container of this runtime is left (workers and one-shot database drops)")


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected
