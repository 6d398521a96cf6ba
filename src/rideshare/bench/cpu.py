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


def machine_times() -> tuple[float, float, float]:
    """(busy, total, irq + softirq) CPU seconds of the whole machine, from /proc/stat."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return ((sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS,
            (values[5] + values[6]) / CLOCK_TICKS)


def all_processes() -> dict[int, tuple[float, int, str, int]]:
    """pid -> (CPU seconds, ppid, command name, start time) of every process visible now (the
    start time tells a reused pid from the process that had it before)."""
    out = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                                int(fields[1]), comm, int(fields[19]))
    return out


@dataclass
class CpuSample:
    """Every process's CPU seconds at the start of a cell, and which group each pid is in."""

    groups: dict[str, set[int]]
    start: dict[int, tuple[float, int, str, int]] = field(default_factory=dict)
    wall_start: float = 0.0
    machine_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def begin(cls, groups: Mapping[str, Iterable[int]]) -> CpuSample:
        sample = cls({name: set(pids) for name, pids in groups.items()})
        sample.start = all_processes()
        sample.machine_start = machine_times()
        sample.wall_start = time.perf_counter()
        return sample

    def end(self) -> tuple[dict[str, float], dict[str, float]]:
        """Percent of one core per group over the cell, and the heaviest other processes.

        Besides the groups: ``kernel`` (kernel threads, interrupts: loopback networking, disk
        flushes, for whoever caused them), ``other`` (every other user process: what else ran
        on the host, including shared servers such as ZooKeeper and PostgreSQL's own background
        processes) and ``machine`` (all of it)."""
        wall = time.perf_counter() - self.wall_start
        now, (busy, total, irq) = all_processes(), machine_times()
        group_of = {pid: name for name, pids in self.groups.items() for pid in pids}
        used = dict.fromkeys([*self.groups, "kernel", "other"], 0.0)
        others: dict[str, float] = {}
        for pid, (seconds, ppid, comm, started) in now.items():
            before = self.start.get(pid)
            delta = seconds - (before[0] if before and before[3] == started else 0.0)
            if pid in group_of:
                used[group_of[pid]] += delta
            elif pid == 2 or ppid == 2:
                used["kernel"] += delta
            else:
                used["other"] += delta
                others[comm] = others.get(comm, 0.0) + delta
        used["kernel"] += irq - self.machine_start[2]
        share = {k: round(100 * v / wall, 1) if wall > 0 else 0.0 for k, v in used.items()}
        total_d = total - self.machine_start[1]
        cores = os.cpu_count() or 1
        share["machine"] = (round(100 * cores * (busy - self.machine_start[0]) / total_d, 1)
                            if total_d > 0 else 0.0)
        top = sorted(others.items(), key=lambda kv: -kv[1])[:5]
        return share, {comm: round(100 * v / wall, 1) for comm, v in top if v > 0}
