"""The scaling rule (docs/dbaas.md, "Scaling"): a pure function and the read window it is fed by."""

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
    """Counts db/read requests in fixed windows: the timer starts at the first read (t0), window
    k is [t0 + k * interval, t0 + (k + 1) * interval), and a read counts in the window in which it
    arrived, however late the reconciliation loop gets round to closing that window."""

    def __init__(self, interval_s: float, reads_per_slave: int, max_slaves: int) -> None:
        self.interval_s = interval_s
        self.reads_per_slave = reads_per_slave
        self.max_slaves = max_slaves
        self._t0: float | None = None
        self._open = 0  # the index of the oldest window not closed yet
        self._counts: dict[int, int] = {}
        self.decisions: deque[ScalingDecision] = deque(maxlen=20)

    @property
    def started_at(self) -> float | None:
        """When the oldest window not closed yet began (None before the first read)."""
        return None if self._t0 is None else self._t0 + self._open * self.interval_s

    @property
    def reads(self) -> int:
        """Reads counted so far in the oldest window not closed yet."""
        return self._counts.get(self._open, 0)

    def record_read(self, now: float) -> None:
        if self._t0 is None:
            self._t0 = now
        index = max(self._open, int((now - self._t0) // self.interval_s))
        self._counts[index] = self._counts.get(index, 0) + 1

    def due(self, now: float) -> bool:
        start = self.started_at
        return start is not None and now >= start + self.interval_s

    def close(self, now: float, slaves_before: int) -> int:
        """Close every window that has ended by ``now``, in order; the number of slaves the last
        of them asks for."""
        after = slaves_before
        while self.due(now):
            reads = self._counts.pop(self._open, 0)
            before, after = after, desired_slaves(reads, self.reads_per_slave, self.max_slaves)
            assert self.started_at is not None
            self.decisions.append(
                ScalingDecision(self.started_at + self.interval_s, reads, before, after))
            self._open += 1
        return after
