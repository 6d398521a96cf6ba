"""Failover under write load: 10 master kills (SIGKILL through the crash API) while 8 clients
write. Per kill: the time from the kill to the first write acknowledged by the new master, and
in all: acknowledged writes lost and writes applied twice (the aim: median under 2 s, 0 and 0).

    .venv/bin/python bench/failover.py [--kills 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import RunningStack, Writers, copies_agree, wait_until  # noqa: E402


def serving(stack: RunningStack) -> int:
    return sum(1 for w in stack.cluster()["workers"] if w["state"] in ("master", "slave"))


def kill_and_time(stack: RunningStack, writers: Writers) -> dict[str, float | int]:
    wait_until(lambda: serving(stack) == 3, 120, "a master and two slaves serve")
    acked = len(writers.acked)
    wait_until(lambda: len(writers.acked) >= acked + 20, 60, "writes flow")
    epoch = stack.cluster()["epoch"]
    killed_at = time.monotonic()
    r = httpx.post(f"{stack.orchestrator_url}/api/v1/crash/master", timeout=10)
    r.raise_for_status()
    first = wait_until(
        lambda: next((t for t, e in list(writers.ack_log) if e > epoch and t >= killed_at), None),
        60, "a write acknowledged by the new master")
    return {"killed_pid": r.json()[0], "seconds_to_first_ack": round(first - killed_at, 3)}


def lost_and_twice(stack: RunningStack, writers: Writers) -> tuple[int, int]:
    wait_until(lambda: copies_agree(stack), 120, "every worker holds the same data")
    with httpx.Client(base_url=stack.orchestrator_url, timeout=60) as db:
        rows = db.post("/api/v1/db/read", json={
            "table": "rides", "columns": ["ride_time"],
            "where": {"ride_time": {"ge": writers.first_key}}, "limit": 10000}).json()["rows"]
    seen: dict[int, int] = {}
    for row in rows:
        seen[row["ride_time"]] = seen.get(row["ride_time"], 0) + 1
    lost = sum(1 for key in writers.acked if key not in seen)
    twice = sum(1 for n in seen.values() if n > 1)
    return lost, twice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    stack = RunningStack(Path(tempfile.mkdtemp(prefix="rideshare-failover-")),
                         {"RIDESHARE_INITIAL_SLAVES": "2"})
    stack.up()
    try:
        httpx.post(f"{stack.orchestrator_url}/api/v1/db/write", timeout=30, json={"ops": [{
            "op": "insert", "table": "users", "on_conflict": "ignore",
            "values": {"username": "driver", "password_hash": "h"}}]}).raise_for_status()
        kills = []
        with Writers(stack, first_key=10_000_000, clients=args.clients) as writers:
            for n in range(args.kills):
                kills.append(kill_and_time(stack, writers))
                print(f"kill {n + 1}: pid {kills[-1]['killed_pid']}, first write on the new "
                      f"master after {kills[-1]['seconds_to_first_ack']:.3f} s", flush=True)
        lost, twice = lost_and_twice(stack, writers)
    finally:
        stack.cli("down")
        stack.cleanup()
    times = [k["seconds_to_first_ack"] for k in kills]
    summary = {"kills": kills, "median_s": statistics.median(times), "max_s": max(times),
               "acknowledged": len(writers.acked), "lost": lost, "applied_twice": twice,
               "errors": writers.errors[:10]}
    print(f"\n{len(kills)} kills: median {summary['median_s']:.3f} s, max {summary['max_s']:.3f} s;"
          f" {len(writers.acked)} writes acknowledged, {lost} lost, {twice} applied twice")
    out = ROOT / "bench" / "results" / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
