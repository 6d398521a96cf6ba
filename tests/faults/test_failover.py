"""High availability with SIGKILL, not polite stops: slaves are replaced, masters re-elected,
and no acknowledged write is lost or applied twice."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from rideshare.localhost import pid_alive
from tests.support import RunningStack, Writers, check_writes, copies_agree, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def ha(make_stack) -> RunningStack:
    stack = make_stack(RIDESHARE_INITIAL_SLAVES="2", RIDESHARE_ZK_SESSION_TIMEOUT_S="4")
    wait_until(lambda: ready_workers(stack) == 3, 60, "a master and two slaves serve")
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        r = db.post("/api/v1/db/write", json={"ops": [{
            "op": "insert", "table": "users", "values": {"username": "driver", "password_hash": "h"}}]})
        assert r.status_code in (200, 409), r.text
    return stack


def ready_workers(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def master(stack: RunningStack) -> dict | None:
    masters = [w for w in stack.cluster()["workers"] if w["state"] == "master"]
    assert len(masters) <= 1, f"two masters: {masters}"
    return masters[0] if masters else None


def pids(stack: RunningStack) -> list[int]:
    return httpx.get(f"{stack.orchestrator_url}/api/v1/worker/list", timeout=5).json()


def test_a_crashed_slave_is_replaced_and_caught_up(ha):
    wait_until(lambda: ready_workers(ha) == 3, 60, "three workers serve")
    before = pids(ha)
    highest = max(w["pid"] for w in ha.cluster()["workers"] if w["role"] == "slave")
    r = httpx.post(f"{ha.orchestrator_url}/api/v1/crash/slave", timeout=10)
    assert r.status_code == 200
    assert r.json() == [highest], "the slave with the highest pid is killed"
    killed = highest
    wait_until(lambda: len(pids(ha)) == len(before) and killed not in pids(ha), 60,
               "the slave is replaced")
    wait_until(lambda: ready_workers(ha) == len(before), 60, "the new slave serves")
    copies = wait_until(lambda: copies_agree(ha), 60, "the new slave holds the master's data")
    assert len(copies) == len(before)


def test_a_crashed_master_is_replaced_by_the_lowest_pid_slave_five_times(ha):
    with Writers(ha, first_key=1_000_000) as writers:
        for round_ in range(5):
            wait_until(lambda: ready_workers(ha) == 3, 60, f"round {round_}: three workers serve")
            acked_before = len(writers.acked)
            wait_until(lambda: len(writers.acked) >= acked_before + 20, 30,
                       f"round {round_}: writes flow")
            old = master(ha)
            assert old is not None
            slaves = [w for w in ha.cluster()["workers"] if w["state"] == "slave"]
            heir = min(slaves, key=lambda w: w["pid"])
            r = httpx.post(f"{ha.orchestrator_url}/api/v1/crash/master", timeout=10)
            assert r.status_code == 200 and r.json() == [old["pid"]]
            killed_at = time.monotonic()
            new = wait_until(lambda: (m := master(ha)) and m["pid"] != old["pid"] and m, 30,
                             f"round {round_}: a new master")
            assert new["pid"] == heir["pid"], "the slave with the lowest pid is elected"
            acked_at_kill = len(writers.acked)
            wait_until(lambda: len(writers.acked) > acked_at_kill, 30,
                       f"round {round_}: writes are acknowledged by the new master")
            print(f"round {round_}: new master after {time.monotonic() - killed_at:.2f} s")
    wait_until(lambda: ready_workers(ha) == 3, 60, "three workers serve at the end")
    check_writes(ha, writers)
    with httpx.Client(base_url=ha.orchestrator_url, timeout=30) as db:
        top = db.post("/api/v1/db/read", json={
            "table": "rides", "columns": ["ride_id"], "order_by": [{"column": "ride_id",
                                                                    "desc": True}],
            "limit": 1}).json()["rows"][0]["ride_id"]
        r = db.post("/api/v1/db/write", json={"ops": [{
            "op": "insert", "table": "rides", "values": {
                "created_by": "driver", "ride_time": 5, "source": 1, "destination": 2}}]})
        assert r.json()["results"][0]["generated"]["ride_id"] > top


def test_a_worker_whose_zookeeper_session_expires_gives_up_its_role(ha):
    wait_until(lambda: ready_workers(ha) == 3, 60, "three workers serve")
    old = master(ha)
    os.kill(old["pid"], signal.SIGSTOP)  # no heartbeats: its session expires after 4 s
    try:
        new = wait_until(lambda: (m := master(ha)) and m["pid"] != old["pid"] and m, 40,
                         "another worker is elected")
    finally:
        try:
            os.kill(old["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_until(lambda: old["pid"] not in pids(ha), 30, "the expired master is gone")
    wait_until(lambda: not pid_alive(old["pid"]), 30,
               "its process has ended")
    assert master(ha)["pid"] == new["pid"]
    r = httpx.post(f"{ha.orchestrator_url}/api/v1/db/write", timeout=30, json={"ops": [{
        "op": "insert", "table": "rides", "values": {
            "created_by": "driver", "ride_time": 6, "source": 1, "destination": 2}}]})
    assert r.status_code == 200, r.text


def test_a_restarted_orchestrator_adopts_the_running_workers(ha):
    wait_until(lambda: ready_workers(ha) == 3, 60, "three workers serve")
    before = ha.cluster()
    with httpx.Client(base_url=ha.orchestrator_url, timeout=30) as db:
        count = db.post("/api/v1/db/read", json={"table": "rides", "count": True}).json()["count"]
    orchestrator = ha.state()["parts"]["orchestrator"]["pid"]
    os.kill(orchestrator, signal.SIGKILL)
    wait_until(lambda: ha.state()["parts"]["orchestrator"]["pid"] != orchestrator, 30,
               "the supervisor restarts the orchestrator")
    wait_until(lambda: httpx.get(f"{ha.orchestrator_url}/health", timeout=2).status_code == 200,
               60, "the new orchestrator is ready")
    after = ha.cluster()
    assert sorted(w["pid"] for w in after["workers"]) == sorted(
        w["pid"] for w in before["workers"])
    assert after["epoch"] == before["epoch"]
    assert master(ha)["id"] == next(w["id"] for w in before["workers"] if w["role"] == "master")
    with httpx.Client(base_url=ha.orchestrator_url, timeout=30) as db:
        assert db.post("/api/v1/db/read", json={"table": "rides", "count": True}).json() == {
            "count": count}
