"""The scaling rule (SPEC §5 "Scaling"): a pure function and the read window it is fed by."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


def desired_slaves(reads: int, reads_per_slave: int, max_slaves: int) -> int:
    """``max(1, ceil(reads / reads_per_slave))``, never above ``max_slaves``:
    0-20 reads give 1 slave, 21-40 give 2, 41-60 give 3 (with the default 20)."""
    return min(max_slaves, max(1, math.ceil(reads / reads_per_slave)))


@dataclass(frozen=True)
class ScalingDecision:
    at: float  # wall-clock time, seconds since the epoch
    window_reads: int
    slaves_before: int
    slaves_after: int


class ReadWindow:
    """Counts db/read requests; the timer starts at the first one and then ticks every
    ``interval_s``, each tick closing the window and resetting the count."""

    def __init__(self, interval_s: float, reads_per_slave: int, max_slaves: int) -> None:
        self.interval_s = interval_s
        self.reads_per_slave = reads_per_slave
        self.max_slaves = max_slaves
        self.started_at: float | None = None
        self.reads = 0
        self.decisions: deque[ScalingDecision] = deque(maxlen=20)

    def record_read(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.reads += 1

    def due(self, now: float) -> bool:
        return self.started_at is not None and now - self.started_at >= self.interval_s

    def close(self, now: float, slaves_before: int) -> int:
        """End the current window: the number of slaves it asks for."""
        after = desired_slaves(self.reads, self.reads_per_slave, self.max_slaves)
        self.decisions.append(ScalingDecision(now, self.reads, slaves_before, after))
        self.reads = 0
        assert self.started_at is not None
        while self.started_at + self.interval_s <= now:
            self.started_at += self.interval_s
        return after
