"""The checker: run once the faults are over and the cluster has settled. It reads every copy
straight from its own PostgreSQL server and holds the history against it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from rideshare.worker.pgserver import conninfo
from tests.campaign.nemesis import Fault
from tests.campaign.workload import History
from tests.support import RunningStack, copies_agree


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.problems


SETTLE_S = 60.0


def settled_copies(stack: RunningStack) -> dict[str, tuple[int, str]] | None:
    """The copies once they agree: a slave may still be loading a fresh copy (one that was
    marked behind, or that reconnected) or joining when the workload stops; they must agree
    within ``SETTLE_S`` and stay so."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        copies = copies_agree(stack)
        if copies is not None:
            return copies
        time.sleep(0.5)
    return None


def check(stack: RunningStack, history: History, faults: list[Fault]) -> Verdict:
    verdict = Verdict()
    writes = list(history.writes.values())
    for outcome in ("ok", "failed", "unknown", "pending"):
        verdict.counts[f"writes {outcome}"] = sum(1 for w in writes if w.outcome == outcome)
    verdict.counts["reads checked"] = history.reads_ok
    verdict.counts["public users ok"] = sum(1 for o in history.users.values() if o == "ok")

    copies = settled_copies(stack)
    if copies is None:
        verdict.problems.append("the copies differ (checksums of every table) for "
                                f"{SETTLE_S:.0f} s after the workload stopped")
    stored = {worker: rides_on(stack, worker) for worker in (copies or {})}
    for worker, rides in stored.items():
        for w in writes:
            n = rides.get(w.key, 0)
            if w.outcome == "ok" and n != 1:
                verdict.problems.append(f"{worker}: acknowledged write {w.key} stored {n} times")
            elif w.bad and n:
                verdict.problems.append(f"{worker}: write {w.key}, which failed, is stored")
            elif w.outcome == "failed" and not w.bad:
                verdict.problems.append(f"write {w.key} failed ({w.status}) though valid")
            elif w.outcome == "unknown" and n > 1:
                verdict.problems.append(f"{worker}: write {w.key} stored {n} times")
        users = users_on(stack, worker)
        lost = [name for name, outcome in history.users.items()
                if outcome == "ok" and name not in users]
        if lost:
            verdict.problems.append(f"{worker}: users created (201) and lost: {lost[:5]}")
        failed = [name for name, outcome in history.users.items()
                  if outcome.startswith("failed")]
        if failed:
            verdict.problems.append(f"public API creations refused: {failed[:5]}")
    verdict.problems += history.violations[:20]
    verdict.problems += epoch_order(writes)
    for fault in faults:
        if not fault.ok:
            verdict.problems.append(
                f"{fault.kind} ({fault.target}): no write and read acknowledged within "
                f"{fault.bound:.0f} s (took {fault.recovered_in}); {fault.note}".rstrip("; "))
    return verdict


def epoch_order(writes: list[Any]) -> list[str]:
    """Once a write has been acknowledged in epoch e, no write first sent after that is
    acknowledged in an older epoch."""
    acked = sorted((w for w in writes if w.outcome == "ok"), key=lambda w: w.acked_at)
    steps: list[tuple[float, int]] = []  # when each higher epoch was first acknowledged
    for w in acked:
        if not steps or w.epoch > steps[-1][1]:
            steps.append((w.acked_at, w.epoch))
    problems = []
    for w in acked:
        floor = max((e for at, e in steps if at < w.sent_at), default=0)
        if w.epoch < floor:
            problems.append(f"write {w.key}, first sent after a write was acknowledged in epoch "
                            f"{floor}, was acknowledged in epoch {w.epoch}")
    return problems[:20]


def rides_on(stack: RunningStack, worker: str) -> dict[int, int]:
    with psycopg.connect(conninfo(stack.data_root() / worker), connect_timeout=10) as conn:
        rows = conn.execute("SELECT ride_time, count(*) FROM rides WHERE ride_time >= 20000000"
                            " GROUP BY ride_time").fetchall()
    return {key: n for key, n in rows}


def users_on(stack: RunningStack, worker: str) -> set[str]:
    with psycopg.connect(conninfo(stack.data_root() / worker), connect_timeout=10) as conn:
        return {name for (name,) in conn.execute(
            "SELECT username FROM users WHERE username LIKE 'pub-%'").fetchall()}
