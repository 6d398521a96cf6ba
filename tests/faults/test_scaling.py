"""Autoscaling: the number of slaves follows the rate of db/read requests (5 s windows here)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support import RunningStack, wait_until

pytestmark = pytest.mark.faults
INTERVAL_S = 5


@pytest.fixture(scope="module")
def scaled(make_stack) -> RunningStack:
    return make_stack(RIDESHARE_SCALE_INTERVAL=str(INTERVAL_S))


def serving_slaves(stack: RunningStack) -> list[dict]:
    return [w for w in stack.cluster()["workers"] if w["state"] == "slave"]


def wait_for_slaves(stack: RunningStack, n: int, timeout_s: float = 60) -> list[dict]:
    def check():
        c = stack.cluster()
        slaves = [w for w in c["workers"] if w["role"] == "slave"]
        ok = c["slaves"]["desired"] == n and len(slaves) == n and all(
            w["state"] == "slave" for w in slaves)
        return slaves if ok else None

    return wait_until(check, timeout_s, f"{n} slaves serve")


def next_window(stack: RunningStack) -> None:
    """Wait until the current window closes, so that what follows falls in a fresh one."""
    decisions = len(stack.cluster()["scaling"]["decisions"])
    wait_until(lambda: len(stack.cluster()["scaling"]["decisions"]) > decisions,
               INTERVAL_S * 3, "the window closes")


class ReadLoad:
    """Reads at a steady rate in a thread of its own, counting every failure."""

    def __init__(self, stack: RunningStack, per_second: float) -> None:
        self.stack, self.per_second = stack, per_second
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.stack.orchestrator_url, timeout=30) as client:
            tasks: set[asyncio.Task] = set()
            started = time.monotonic()
            sent = 0
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.per_second)
                while sent < due:
                    sent += 1
                    task = asyncio.create_task(self._read(client))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0.02)
            await asyncio.gather(*tasks)

    async def _read(self, client: httpx.AsyncClient) -> None:
        try:
            r = await client.post("/api/v1/db/read", json={"table": "users", "count": True})
            if r.status_code == 200:
                self.ok += 1
            else:
                self.failures.append(f"{r.status_code} {r.text}")
        except httpx.HTTPError as exc:
            self.failures.append(repr(exc))

    def __enter__(self) -> ReadLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)


async def burst(stack: RunningStack, n: int, concurrency: int = 16) -> list[int]:
    async with httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=30) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with sem:
                r = await client.post("/api/v1/db/read", json={"table": "users", "count": True})
                return r.status_code

        return await asyncio.gather(*(one() for _ in range(n)))


def test_65_reads_in_a_window_give_4_slaves_and_an_idle_window_gives_1(scaled):
    wait_for_slaves(scaled, 1)
    with ReadLoad(scaled, per_second=1.5) as load:  # ~8 reads a window: alone, 1 slave
        next_window(scaled)
        assert asyncio.run(burst(scaled, 65)) == [200] * 65
        wait_for_slaves(scaled, 4)
        decision = scaled.cluster()["scaling"]["decisions"][-1]
        assert decision["slaves_after"] == 4 and 65 <= decision["window_reads"] <= 80
        wait_for_slaves(scaled, 1)  # the following windows are idle
    assert load.ok > 10
    assert load.failures == [], "no read fails while the pool grows or shrinks"


def test_a_crashed_slave_is_replaced_but_a_retired_one_is_not(scaled):
    with ReadLoad(scaled, per_second=10) as load:  # ~50 reads a window: 3 slaves
        slaves = wait_for_slaves(scaled, 3)
        r = httpx.post(f"{scaled.orchestrator_url}/api/v1/crash/slave", timeout=10)
        (killed,) = r.json()
        assert killed == max(w["pid"] for w in slaves)
        again = wait_for_slaves(scaled, 3)
        assert killed not in [w["pid"] for w in again]
    retired = wait_for_slaves(scaled, 1)
    for _ in range(2):  # two more windows: the retired slaves stay retired
        next_window(scaled)
        assert len([w for w in scaled.cluster()["workers"] if w["role"] == "slave"]) == 1
    assert retired[0]["pid"] in [w["pid"] for w in again]
    assert load.failures == []


def test_reads_are_spread_over_all_slaves(scaled):
    with ReadLoad(scaled, per_second=10):
        wait_for_slaves(scaled, 3)
        before = {w["id"]: w["reads_served"] for w in serving_slaves(scaled)}
        # Few at a time: reads sent together travel as one message, served by one slave.
        assert asyncio.run(burst(scaled, 100, concurrency=2)) == [200] * 100

        def shares():
            now = {w["id"]: w["reads_served"] for w in serving_slaves(scaled)}
            delta = {w: now[w] - before.get(w, 0) for w in before if w in now}
            return delta if sum(delta.values()) >= 100 else None

        delta = wait_until(shares, 15, "the slaves report the reads they served")
    assert len(delta) == 3
    assert all(n >= 5 for n in delta.values()), f"each slave serves a share: {delta}"


def test_the_original_grader_sequence_shortened(scaled):
    wait_for_slaves(scaled, 1)
    gateway = scaled.gateway_url
    name = f"grader-{uuid.uuid4().hex[:6]}"
    assert httpx.put(f"{gateway}/api/v1/users", json={
        "username": name, "password": "3d725109c7e7c0bfb9d709836735b56d943d263f"},
        timeout=30).status_code == 201
    when = (datetime.utcnow() + timedelta(days=30)).strftime("%d-%m-%Y:%S-%M-%H")
    r = httpx.post(f"{gateway}/api/v1/rides", json={
        "created_by": name, "timestamp": when, "source": "7", "destination": "8"}, timeout=30)
    assert r.status_code == 201, r.text
    before = httpx.get(f"{scaled.orchestrator_url}/api/v1/worker/list", timeout=5).json()
    next_window(scaled)
    statuses = []
    for i in range(28):
        pair = (7, 8) if i % 2 == 0 else (9, 10)
        statuses.append(httpx.get(f"{gateway}/api/v1/rides",
                                  params={"source": pair[0], "destination": pair[1]},
                                  timeout=30).status_code)
    assert statuses.count(200) == 14 and statuses.count(204) == 14
    wait_for_slaves(scaled, 2)
    grown = httpx.get(f"{scaled.orchestrator_url}/api/v1/worker/list", timeout=5).json()
    assert len(grown) > len(before)
    (killed,) = httpx.post(f"{scaled.orchestrator_url}/api/v1/crash/slave", timeout=10).json()

    def replaced():
        pids = httpx.get(f"{scaled.orchestrator_url}/api/v1/worker/list", timeout=5).json()
        return len(pids) == len(grown) and killed not in pids

    wait_until(replaced, 60, "the same number of workers again, without the killed pid")
    r = httpx.get(f"{gateway}/api/v1/rides", params={"source": 7, "destination": 8}, timeout=30)
    assert r.status_code == 200 and r.json()[0]["username"] == name
