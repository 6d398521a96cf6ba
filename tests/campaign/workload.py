"""The campaign's workload: concurrent clients whose every write is unique and recorded with its
outcome, and whose reads check read-your-writes as they go.

- DBaaS writers insert rides through ``db/write``, each with its own write id and a unique
  ``ride_time`` (its key). An answer 200 is ``ok`` (with the epoch and master that committed it);
  a 4xx is ``failed``; a 503, a timeout or a dropped connection is retried with the same id until
  the write's time runs out, and is ``unknown`` then. One write in twenty is made to fail: a ride
  and, in the same write, a membership of a user that does not exist, so that nothing of it may
  ever be stored.
- After each ``ok`` write, the writer reads its own ride back, and a sample of rides acknowledged
  to anyone before the read was sent: each must be there.
- Public API clients create users through the gateway (with an ``Idempotency-Key``, retried on
  503), then fetch each one they created.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import RunningStack

DRIVER = "campaign-driver"
PASSWORD = "3d725109c7e7c0bfb9d709836735b56d943d263f"
WRITE_PATIENCE_S = 45.0


@dataclass
class WriteRecord:
    key: int
    write_id: str
    sent_at: float
    bad: bool  # made to fail: must never be stored
    outcome: str = "pending"  # ok | failed | unknown
    acked_at: float = 0.0
    epoch: int = 0
    master: str = ""
    status: int = 0


@dataclass
class History:
    writes: dict[int, WriteRecord] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # public API: name -> ok | unknown
    violations: list[str] = field(default_factory=list)  # read-your-writes
    reads_ok: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_before(self, moment: float) -> list[WriteRecord]:
        with self.lock:
            return [w for w in self.writes.values() if w.outcome == "ok" and w.acked_at < moment]


class Workload:
    def __init__(self, stack: RunningStack, seed: int, writers: int = 6,
                 public_clients: int = 2) -> None:
        self.stack, self.history = stack, History()
        self.random = random.Random(seed)
        self.writers, self.public_clients = writers, public_clients
        self.seed = seed
        self._next_key = 20_000_000 + seed * 1_000_000  # workloads on one stack never meet
        self._stop = threading.Event()

    def prepare(self) -> None:
        r = httpx.post(f"{self.stack.orchestrator_url}/api/v1/db/write", timeout=30, json={
            "ops": [{"op": "insert", "table": "users", "on_conflict": "ignore",
                     "values": {"username": DRIVER, "password_hash": "h"}}]})
        assert r.status_code == 200, r.text

    def __enter__(self) -> Workload:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()),
                                        name="workload", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(WRITE_PATIENCE_S + 30)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=self.stack.orchestrator_url, timeout=15,
                                     limits=limits) as db, \
                httpx.AsyncClient(base_url=self.stack.gateway_url, timeout=15,
                                  limits=limits) as gw:
            await asyncio.gather(*(self._writer(db, n) for n in range(self.writers)),
                                 *(self._public(gw, n) for n in range(self.public_clients)))

    def _new_key(self) -> int:
        self._next_key += 1
        return self._next_key

    # --- the DBaaS writers ---------------------------------------------------------------------

    async def _writer(self, db: httpx.AsyncClient, n: int) -> None:
        while not self._stop.is_set():
            key = self._new_key()
            bad = self.random.random() < 0.05
            record = WriteRecord(key, f"campaign-{key}", time.monotonic(), bad)
            with self.history.lock:
                self.history.writes[key] = record
            await self._write(db, record)
            if record.outcome == "ok":
                await self._read_back(db, record)
            await asyncio.sleep(0.01)

    async def _write(self, db: httpx.AsyncClient, record: WriteRecord) -> None:
        ops: list[dict[str, Any]] = [{"op": "insert", "table": "rides", "values": {
            "created_by": DRIVER, "ride_time": record.key, "source": 1, "destination": 2}}]
        if record.bad:
            ops.append({"op": "insert", "table": "ride_members", "values": {
                "ride_id": 1, "username": f"nobody-{record.key}"}})
        give_up = record.sent_at + WRITE_PATIENCE_S
        while time.monotonic() < give_up:
            try:
                r = await db.post("/api/v1/db/write", json={"id": record.write_id, "ops": ops})
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            record.status = r.status_code
            if r.status_code == 200:
                answer = r.json()
                record.outcome, record.acked_at = "ok", time.monotonic()
                record.epoch, record.master = answer["epoch"], answer.get("master") or ""
                return
            if 400 <= r.status_code < 500:
                record.outcome = "failed"
                return
            await asyncio.sleep(0.1)
        record.outcome = "unknown"

    async def _read_back(self, db: httpx.AsyncClient, record: WriteRecord) -> None:
        sent_at = time.monotonic()
        earlier = self.history.acked_before(sent_at)
        sample = [record] + self.random.sample(earlier, min(20, len(earlier)))
        keys = sorted({w.key for w in sample})
        try:
            r = await db.post("/api/v1/db/read", json={
                "table": "rides", "columns": ["ride_time"],
                "where": {"ride_time": {"in": keys}}})
        except httpx.HTTPError:
            return  # no answer is not a wrong answer
        if r.status_code != 200:
            return
        found = {row["ride_time"] for row in r.json()["rows"]}
        missing = [k for k in keys if k not in found]
        with self.history.lock:
            if missing:
                self.history.violations.append(
                    f"a read sent at {sent_at:.3f} missed rides acknowledged before it: "
                    f"{missing[:5]}")
            else:
                self.history.reads_ok += 1

    # --- the public API ------------------------------------------------------------------------

    async def _public(self, gw: httpx.AsyncClient, n: int) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            name = f"pub-{self.seed}-{n}-{count}"
            outcome = "unknown"
            give_up = time.monotonic() + WRITE_PATIENCE_S
            while time.monotonic() < give_up:
                try:
                    r = await gw.put("/api/v1/users", json={"username": name,
                                                            "password": PASSWORD},
                                     headers={"Idempotency-Key": name})
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code == 201:
                    outcome = "ok"
                    break
                if r.status_code != 503:
                    outcome = f"failed {r.status_code}"
                    break
                await asyncio.sleep(0.1)
            with self.history.lock:
                self.history.users[name] = outcome
            if outcome == "ok":
                try:
                    r = await gw.get(f"/api/v1/users/{name}")
                except httpx.HTTPError:
                    continue
                if r.status_code == 404:
                    with self.history.lock:
                        self.history.violations.append(
                            f"user {name} was created (201) and then not found (404)")
            await asyncio.sleep(0.05)
