"""CPU share of each process of the stack during a cell, read from /proc.

The share is CPU seconds (user + system) over wall seconds, in percent of ONE core: on a 2-core
machine the whole machine is 200 %. A part counts with its descendants (uvicorn's worker
processes, nginx's workers) except the processes reported on their own (the orchestrator's
workers are its children, but they are shown as master and slaves).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, None once it has gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, for every process visible now."""
    out: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def with_descendants(pid: int, tree: Mapping[int, list[int]], stop: set[int]) -> set[int]:
    """``pid`` and every process below it, not descending into the pids in ``stop``."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current in stop or current in found:
            continue
        found.add(current)
        todo.extend(tree.get(current, ()))
    return found


def pids_by_name(name: str) -> list[int]:
    """Processes whose command name (``comm``) is ``name``: how the broker is found."""
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from the first line of /proc/stat."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class CpuSample:
    """Groups of pids and their CPU seconds at the start of a cell."""

    groups: dict[str, set[int]]
    start: dict[int, float] = field(default_factory=dict)
    wall_start: float = 0.0
    machine_start: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def begin(cls, groups: Mapping[str, Iterable[int]]) -> CpuSample:
        sample = cls({name: set(pids) for name, pids in groups.items()})
        for pids in sample.groups.values():
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    sample.start[pid] = seconds
        sample.machine_start = machine_busy()
        sample.wall_start = time.perf_counter()
        return sample

    def end(self) -> dict[str, float]:
        """Percent of one core per group over the cell, plus ``machine`` (every process) and
        ``other`` (machine minus the groups: whatever else ran, which makes a figure noisy)."""
        wall = time.perf_counter() - self.wall_start
        out: dict[str, float] = {}
        for name, pids in self.groups.items():
            used = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is not None and pid in self.start:
                    used += now - self.start[pid]
            out[name] = round(100 * used / wall, 1) if wall > 0 else 0.0
        busy, total = machine_busy()
        busy_d, total_d = busy - self.machine_start[0], total - self.machine_start[1]
        cores = os.cpu_count() or 1
        out["machine"] = round(100 * cores * busy_d / total_d, 1) if total_d > 0 else 0.0
        out["other"] = round(max(0.0, out["machine"] - sum(out[g] for g in self.groups)), 1)
        return out
