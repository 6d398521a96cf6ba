"""The closed-loop load driver: N clients, each sending its next request when the last one
answered, until the time or the request budget of the cell runs out (whichever comes first).

A closed loop measures what the system sustains at a given concurrency, never a queue that grows
without bound; the bounds keep every cell, and so every run, short and predictable.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

#: What one request ended with: an HTTP status (200 for a direct database call that worked) or
#: the name of the exception that ended it.
Outcome = int | str
#: One request of a scenario; it gets the client's number (0..N-1) and returns its outcome.
Op = Callable[[int], Awaitable[Outcome]]
#: Told (requests answered so far, seconds since the measured start) a few times a second.
Tick = Callable[[int, float], None]


@dataclass
class CellRun:
    """The raw record of one cell: every expected answer's latency, and every outcome."""

    clients: int
    latencies_s: list[float] = field(default_factory=list)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def errors(self, expected: Collection[Outcome]) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.outcomes.items(), key=lambda kv: str(kv[0]))
                if k not in expected}


async def _call(op: Op, client: int) -> Outcome:
    try:
        return await op(client)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is an outcome to count, not a crash
        return type(exc).__name__


async def drive(op: Op, clients: int, duration_s: float, max_requests: int,
                expected: Collection[Outcome], warmup_per_client: int = 2,
                tick: Tick | None = None, on_start: Callable[[], None] | None = None) -> CellRun:
    """Run one cell. Each client first sends ``warmup_per_client`` requests that are not
    measured (connections opened, statements prepared), then all start the clock together."""
    run = CellRun(clients)
    await asyncio.gather(*(_warm(op, c, warmup_per_client) for c in range(clients)))
    if on_start:
        on_start()
    issued = 0
    started = time.perf_counter()
    deadline = started + duration_s

    async def client(number: int) -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            outcome = await _call(op, number)
            if outcome in expected:
                run.latencies_s.append(time.perf_counter() - t0)
            run.outcomes[outcome] += 1

    ticker = asyncio.create_task(_tick(run, started, tick)) if tick else None
    try:
        await asyncio.gather(*(client(c) for c in range(clients)))
    finally:
        run.elapsed_s = time.perf_counter() - started
        if ticker:
            ticker.cancel()
    if tick:
        tick(run.requests, run.elapsed_s)
    return run


async def _warm(op: Op, client: int, n: int) -> None:
    for _ in range(n):
        await _call(op, client)


async def _tick(run: CellRun, started: float, tick: Tick) -> None:
    while True:
        tick(run.requests, time.perf_counter() - started)
        await asyncio.sleep(0.2)
