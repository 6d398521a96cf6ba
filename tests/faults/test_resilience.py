"""The backing servers misbehaving: RabbitMQ dropping our connections, ZooKeeper restarting.
Clients reconnect, and nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.support import RunningStack, Writers, check_writes, wait_until

pytestmark = pytest.mark.faults
ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"


@pytest.fixture(scope="module")
def shaky(make_stack) -> RunningStack:
    stack = make_stack(RIDESHARE_INITIAL_SLAVES="2", RIDESHARE_WRITE_TIMEOUT_S="2")
    wait_until(lambda: serving(stack) == 3, 60, "a master and two slaves serve")
    r = httpx.post(f"{stack.orchestrator_url}/api/v1/db/write", timeout=30, json={"ops": [{
        "op": "insert", "table": "users", "values": {"username": "driver", "password_hash": "h"},
        "on_conflict": "ignore"}]})
    assert r.status_code == 200, r.text
    return stack


def serving(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def our_connections(stack: RunningStack) -> list[str]:
    """RabbitMQ's pids of this stack's connections (their names start with its queue prefix)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid",
         "client_properties"], capture_output=True, text=True, timeout=30, check=True).stdout
    name = f'{{"connection_name","{stack.env["RIDESHARE_QUEUE_PREFIX"]}'
    return [line.split("\t", 1)[0] for line in listed.splitlines() if name in line]


def test_rabbitmq_closing_every_connection_loses_no_acknowledged_write(shaky):
    with Writers(shaky, first_key=3_000_000) as writers:
        wait_until(lambda: len(writers.acked) >= 50, 30, "writes flow")
        connections = our_connections(shaky)
        assert len(connections) == 4  # the orchestrator and three workers
        for pid in connections:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test: dropped"],
                           capture_output=True, timeout=30, check=True)
        acked = len(writers.acked)
        wait_until(lambda: len(writers.acked) >= acked + 50, 60,
                   "writes are acknowledged again after the connections are restored")
    wait_until(lambda: serving(shaky) == 3, 60, "a master and two slaves serve again")
    check_writes(shaky, writers)


def test_a_zookeeper_restart_loses_no_acknowledged_write(shaky):
    before = sorted(w["pid"] for w in shaky.cluster()["workers"])
    with Writers(shaky, first_key=4_000_000) as writers:
        wait_until(lambda: len(writers.acked) >= 50, 30, "writes flow")
        subprocess.run([ZK_SERVER, "restart"], capture_output=True, timeout=120, check=True)
        acked = len(writers.acked)
        wait_until(lambda: len(writers.acked) >= acked + 50, 60,
                   "writes are acknowledged after the restart")
    wait_until(lambda: serving(shaky) == 3, 60, "a master and two slaves serve again")
    check_writes(shaky, writers)
    after = sorted(w["pid"] for w in shaky.cluster()["workers"])
    print(f"workers before {before}, after {after}")


def test_with_no_master_a_write_is_a_clear_503_in_bounded_time_and_reads_go_on(shaky):
    wait_until(lambda: serving(shaky) == 3, 60, "a master and two slaves serve")
    master = next(w for w in shaky.cluster()["workers"] if w["state"] == "master")
    os.kill(master["pid"], signal.SIGSTOP)  # alive, holding writeQ, answering nothing
    try:
        started = time.monotonic()
        r = httpx.post(f"{shaky.orchestrator_url}/api/v1/db/write", timeout=30, json={
            "id": "while-paused", "ops": [{"op": "insert", "table": "users", "values": {
                "username": "while-paused", "password_hash": "h"}}]})
        waited = time.monotonic() - started
        assert r.status_code == 503 and "retry with the same 'id'" in r.json()["error"]
        assert 1.5 <= waited < 10
        read = httpx.post(f"{shaky.orchestrator_url}/api/v1/db/read", timeout=30,
                          json={"table": "users", "count": True})
        assert read.status_code == 200, "the slaves keep serving reads"
    finally:
        os.kill(master["pid"], signal.SIGCONT)
    again = httpx.post(f"{shaky.orchestrator_url}/api/v1/db/write", timeout=30, json={
        "id": "while-paused", "ops": [{"op": "insert", "table": "users", "values": {
            "username": "while-paused", "password_hash": "h"}}]})
    assert again.status_code == 200, "a retry with the same id is safe, whatever happened"
    count = httpx.post(f"{shaky.orchestrator_url}/api/v1/db/read", timeout=30, json={
        "table": "users", "count": True, "where": {"username": "while-paused"}}).json()
    assert count == {"count": 1}
