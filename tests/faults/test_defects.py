"""Defects found by using RideShare as a careful user would, each with the test that showed it:
a write the database refuses, a body too large, a slave left behind, ZooKeeper losing our nodes,
a slave's database freezing, a master's database freezing, and a master paused past its session."""

from __future__ import annotations

import os
import random
import signal
import socket
import string
import subprocess
import time

import httpx
import pytest

from rideshare.localhost import pid_alive
from tests.support import (
    RunningStack,
    Writers,
    check_writes,
    copies_agree,
    processes_of_data_dir,
    wait_until,
)

pytestmark = pytest.mark.faults
ZK_CLI = "/usr/share/zookeeper/bin/zkCli.sh"


@pytest.fixture(scope="module")
def cluster(make_stack) -> RunningStack:
    stack = make_stack(RIDESHARE_INITIAL_SLAVES="2", RIDESHARE_ZK_SESSION_TIMEOUT_S="4",
                       RIDESHARE_DB_DEADLINE_S="4", RIDESHARE_WRITE_TIMEOUT_S="5")
    wait_until(lambda: serving(stack) == 3, 60, "a master and two slaves serve")
    r = httpx.post(f"{stack.orchestrator_url}/api/v1/db/write", timeout=30, json={"ops": [{
        "op": "insert", "table": "users", "values": {"username": "driver", "password_hash": "h"},
        "on_conflict": "ignore"}]})
    assert r.status_code == 200, r.text
    return stack


def serving(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def worker(stack: RunningStack, state: str) -> dict:
    """A worker in ``state`` ({} while there is none, as during a failover)."""
    return next((w for w in stack.cluster()["workers"] if w["state"] == state), {})


def write(stack: RunningStack, body: dict, timeout_s: float = 30) -> httpx.Response:
    return httpx.post(f"{stack.orchestrator_url}/api/v1/db/write", json=body, timeout=timeout_s)


def read(stack: RunningStack, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.orchestrator_url}/api/v1/db/read", json=body, timeout=30)


def freeze(data_dir) -> list:
    """SIGSTOP every process of a worker's PostgreSQL server: it is there, and answers nothing."""
    frozen = processes_of_data_dir(data_dir)
    for proc in frozen:
        proc.send_signal(signal.SIGSTOP)
    return frozen


def thaw(frozen: list) -> None:
    for proc in frozen:
        try:
            proc.send_signal(signal.SIGCONT)
        except Exception:  # noqa: BLE001 - gone already
            pass


def test_a_write_the_database_refuses_is_a_4xx_and_no_master_dies_of_it(cluster):
    epoch = cluster.cluster()["epoch"]
    name = "".join(random.choice(string.ascii_letters) for _ in range(12_000))
    for attempt in range(3):  # a redelivery must not kill the next master either
        r = write(cluster, {"id": "too-long-name", "ops": [{
            "op": "insert", "table": "users", "values": {"username": name,
                                                         "password_hash": "h"}}]})
        assert 400 <= r.status_code < 500, (attempt, r.status_code, r.text)
        assert "error" in r.json()
    assert cluster.cluster()["epoch"] == epoch, "no failover"
    assert serving(cluster) == 3
    assert write(cluster, {"ops": [{"op": "insert", "table": "users", "values": {
        "username": "after-the-refusal", "password_hash": "h"}}]}).status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(cluster):
    host, port = cluster.orchestrator_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /api/v1/db/write HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
        conn.sendall(b"{" * 65536)  # and nothing more: the rest never comes
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /api/v1/db/write HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * (1 << 20)
        for _ in range(9):
            conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        answer = conn.recv(4096)  # 9 MiB sent, the body not finished: answered already
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_slave_left_behind_loses_the_oldest_batches_and_reloads_a_copy(make_stack):
    # Sessions and heartbeats long enough that a stopped slave stays a member meanwhile.
    cluster = make_stack(RIDESHARE_SYNC_QUEUE_MAX_LENGTH="40", RIDESHARE_AMQP_HEARTBEAT_S="30",
                         RIDESHARE_ZK_SESSION_TIMEOUT_S="20")
    wait_until(lambda: serving(cluster) == 2, 60, "a master and a slave serve")
    slave = worker(cluster, "slave")
    os.kill(slave["pid"], signal.SIGSTOP)  # shorter than its session: it stays a member
    try:
        for i in range(150):  # more than its prefetch (64) and its queue (40) hold together
            assert write(cluster, {"ops": [{"op": "insert", "table": "users", "values": {
                "username": f"while-stopped-{i}", "password_hash": "h"}}]}).status_code == 200
        ready = messages_ready(f"{cluster.env['RIDESHARE_QUEUE_PREFIX']}syncQ.{slave['id']}")
        assert ready is not None and ready <= 40, f"the sync queue is bounded: {ready}"
    finally:
        os.kill(slave["pid"], signal.SIGCONT)
    wait_until(lambda: copies_agree(cluster), 60, "the slave reloaded a copy and caught up")


def messages_ready(queue: str) -> int | None:
    """Messages waiting in ``queue`` (not those delivered to its consumer and not yet acked)."""
    listed = subprocess.run(["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name",
                             "messages_ready"], capture_output=True, text=True, timeout=30).stdout
    for line in listed.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return None


def test_if_zookeeper_loses_our_nodes_the_cluster_recovers(cluster):
    wait_until(lambda: serving(cluster) == 3, 60, "three workers serve")
    epoch = cluster.cluster()["epoch"]
    root = cluster.env["RIDESHARE_ZK_ROOT"]
    done = subprocess.run([ZK_CLI, "-server", "127.0.0.1:2181", "deleteall", root],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: write(cluster, {"ops": [{"op": "insert", "table": "users", "values": {
        "username": f"after-zk-loss-{time.monotonic()}", "password_hash": "h"}}]},
        timeout_s=10).status_code == 200, 30, "writes are acknowledged again")
    assert read(cluster, {"table": "users", "count": True}).status_code == 200
    wait_until(lambda: serving(cluster) == 3, 60, "a master and two slaves serve again")
    assert cluster.cluster()["epoch"] >= epoch, "the epoch never goes back"


def test_a_slave_whose_database_freezes_costs_no_read(cluster):
    wait_until(lambda: serving(cluster) == 3, 60, "three workers serve")
    slave = worker(cluster, "slave")
    frozen = freeze(cluster.data_root() / slave["id"])
    try:
        started = time.monotonic()
        for _ in range(20):
            r = read(cluster, {"table": "users", "count": True})
            assert r.status_code == 200, r.text
        print(f"20 reads with one slave frozen in {time.monotonic() - started:.1f} s")
        wait_until(lambda: slave["pid"] not in [w["pid"] for w in cluster.cluster()["workers"]],
                   30, "the slave whose database froze leaves")
    finally:
        thaw(frozen)
    wait_until(lambda: serving(cluster) == 3, 60, "it is replaced")


def test_a_master_whose_database_freezes_steps_down_and_loses_nothing(cluster):
    wait_until(lambda: serving(cluster) == 3, 60, "three workers serve")
    master = worker(cluster, "master")
    with Writers(cluster, first_key=9_000_000) as writers:
        wait_until(lambda: len(writers.acked) >= 30, 30, "writes flow")
        frozen = freeze(cluster.data_root() / master["id"])
        try:
            frozen_at = time.monotonic()
            acked = len(writers.acked)
            wait_until(lambda: worker(cluster, "master").get("pid") not in (None, master["pid"]) and
                       len(writers.acked) > acked + 10, 30, "a new master takes writes")
            print(f"writes flow again {time.monotonic() - frozen_at:.1f} s after the freeze")
        finally:
            thaw(frozen)
    wait_until(lambda: serving(cluster) == 3, 60, "three workers serve again")
    check_writes(cluster, writers)


def test_a_paused_master_is_replaced_within_15_s_and_never_acknowledged_again(make_stack):
    # The orchestrator does not kill the lost master here (it could not, across hosts): the
    # master's own fencing is what is tested.
    cluster = make_stack(RIDESHARE_INITIAL_SLAVES="2", RIDESHARE_ZK_SESSION_TIMEOUT_S="4",
                         RIDESHARE_KILL_LOST_WORKERS="false")
    wait_until(lambda: serving(cluster) == 3, 60, "three workers serve")
    assert write(cluster, {"ops": [{"op": "insert", "table": "users", "values": {
        "username": "driver", "password_hash": "h"}}]}).status_code == 200
    old = worker(cluster, "master")
    epoch = cluster.cluster()["epoch"]
    with Writers(cluster, first_key=9_500_000) as writers:
        wait_until(lambda: len(writers.acked) >= 30, 30, "writes flow")
        os.kill(old["pid"], signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            wait_until(lambda: any(e > epoch and t > paused_at
                                   for t, e in list(writers.ack_log)), 15,
                       "a write is acknowledged in a new epoch within 15 s")
            print(f"a write acknowledged by the new master "
                  f"{time.monotonic() - paused_at:.1f} s after the pause")
            time.sleep(max(0.0, paused_at + 20 - time.monotonic()))
        finally:
            os.kill(old["pid"], signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: not pid_runs(old["pid"]), 30, "the resumed master leaves")
    late = [(t, e) for t, e in writers.ack_log if t > resumed_at and e <= epoch]
    assert late == [], "the deposed master got no write acknowledged after it resumed"
    check_writes(cluster, writers)


def pid_runs(pid: int) -> bool:
    return pid_alive(pid)
