"""Each worker's copy in a PostgreSQL server of its own: one server per worker, none on the
system's server, a server that lives and dies with its worker, and a server killed under write
load costs its worker (a slave is replaced, a master fails over) but no acknowledged write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psycopg
import pytest

from tests.support import (
    ROOT,
    RunningStack,
    Writers,
    check_writes,
    processes_of_data_dir,
    servers_under,
    wait_until,
)

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def copies(make_stack) -> RunningStack:
    stack = make_stack(RIDESHARE_INITIAL_SLAVES="2", RIDESHARE_ZK_SESSION_TIMEOUT_S="4")
    wait_until(lambda: serving(stack) == 3, 60, "a master and two slaves serve")
    r = httpx.post(f"{stack.orchestrator_url}/api/v1/db/write", timeout=30, json={"ops": [{
        "op": "insert", "table": "users", "values": {"username": "driver", "password_hash": "h"},
        "on_conflict": "ignore"}]})
    assert r.status_code == 200, r.text
    return stack


def serving(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def worker(stack: RunningStack, state: str) -> dict:
    return next(w for w in stack.cluster()["workers"] if w["state"] == state)


def test_every_worker_has_a_server_of_its_own_and_the_system_server_holds_none(copies):
    wait_until(lambda: serving(copies) == 3, 60, "three workers serve")
    workers = {w["id"]: w["pid"] for w in copies.cluster()["workers"]}
    servers = servers_under(copies.data_root())
    assert {d.name for d in servers} == set(workers), "one server per worker, named after it"
    for data_dir, postmaster in servers.items():
        assert postmaster.ppid() == workers[data_dir.name], "each server is its worker's child"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        names = [n for (n,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn").fetchall()]
    for name in names:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            held = conn.execute("SELECT to_regclass('log_state') IS NOT NULL").fetchone()[0]
            assert not held, f"the system's server holds a worker database: {name}"


def test_a_worker_killed_with_sigkill_takes_its_server_along_within_5_s(copies):
    wait_until(lambda: serving(copies) == 3, 60, "three workers serve")
    victim = worker(copies, "slave")
    data_dir = copies.data_root() / victim["id"]
    assert processes_of_data_dir(data_dir), "its server runs"
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: not processes_of_data_dir(data_dir), 5,
               "no process of the killed worker's server is left")
    wait_until(lambda: serving(copies) == 3 and victim["pid"] not in
               [w["pid"] for w in copies.cluster()["workers"]], 60, "the slave is replaced")


@pytest.mark.parametrize("role", ["slave", "master"])
def test_a_killed_server_costs_its_worker_but_no_acknowledged_write(copies, role):
    wait_until(lambda: serving(copies) == 3, 60, "three workers serve")
    epoch = copies.cluster()["epoch"]
    victim = worker(copies, role)
    postmaster = servers_under(copies.data_root())[copies.data_root() / victim["id"]]
    first_key = 7_000_000 if role == "slave" else 8_000_000
    with Writers(copies, first_key=first_key) as writers:
        wait_until(lambda: len(writers.acked) >= 50, 30, "writes flow")
        postmaster.send_signal(signal.SIGKILL)
        wait_until(lambda: victim["pid"] not in
                   [w["pid"] for w in copies.cluster()["workers"]], 30,
                   f"the {role} whose server died is gone")
        acked = len(writers.acked)
        wait_until(lambda: len(writers.acked) >= acked + 50, 60, "writes are acknowledged again")
    wait_until(lambda: serving(copies) == 3, 60, "a master and two slaves serve again")
    if role == "master":
        assert copies.cluster()["epoch"] > epoch, "a new master was elected"
    check_writes(copies, writers)


def test_a_worker_that_fails_to_start_leaves_no_server(copies, tmp_path):
    data_dir = copies.data_root() / "w0failedstart"
    env = {**copies.env, "RIDESHARE_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
    done = subprocess.run([sys.executable, "-m", "rideshare.worker", "--id", "w0failedstart"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, "a worker that cannot reach the broker does not start"
    assert (data_dir / "PG_VERSION").exists(), "its server had been made and started"
    assert not processes_of_data_dir(data_dir), "and it was stopped again"
    subprocess.run([sys.executable, "-m", "rideshare.worker", "--drop-copy", str(data_dir)],
                   env=copies.env, cwd=ROOT, check=True, timeout=60)
    assert not data_dir.exists()
