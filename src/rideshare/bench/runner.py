"""One cell, end to end: sample the CPU, drive the load, summarize, report a line."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from rideshare.bench.cpu import CpuSample
from rideshare.bench.load import Op, Outcome, drive
from rideshare.bench.report import CellProgress, fmt_errors, fmt_ms
from rideshare.bench.stats import summarize
from rideshare.bench.topology import Topology


@dataclass(frozen=True)
class Bounds:
    """How long a cell may run and how many requests it may send: whichever ends first."""

    duration_s: float
    max_requests: int
    warmup_per_client: int = 2


async def run_cell(system: str, scenario: str, clients: int, op: Op,
                   expected: Collection[Outcome], topology: Topology, bounds: Bounds,
                   progress: CellProgress, **extra: Any) -> dict[str, Any]:
    """Run one (system, scenario, clients) cell and return its JSON record."""
    label = f"{system:<9} {scenario:<13} ×{clients:<4}"
    tick, finish = progress.cell(label, bounds.duration_s, bounds.max_requests)
    sample: list[CpuSample] = []
    run = await drive(op, clients, bounds.duration_s, bounds.max_requests, expected,
                      bounds.warmup_per_client, tick,
                      on_start=lambda: sample.append(CpuSample.begin(topology.groups)))
    cpu, heaviest_others = sample[0].end() if sample else ({}, {})
    summary = summarize(run.latencies_s, run.elapsed_s)
    errors = run.errors(expected)
    finish(f"{label} {summary.rps:>8,.0f} req/s  p50 {fmt_ms(summary.p50_ms):>6} ms  "
           f"p99 {fmt_ms(summary.p99_ms):>6} ms  errors {fmt_errors(errors)}")
    return {
        "system": system, "scenario": scenario, "clients": clients, **extra,
        "requests": run.requests, "elapsed_s": round(run.elapsed_s, 3),
        "summary": summary.as_json(), "errors": errors,
        "outcomes": {str(k): v for k, v in run.outcomes.items()},
        "cpu": cpu, "heaviest_other_processes": heaviest_others,
        "cluster": topology.shape if topology.cluster else None,
    }
