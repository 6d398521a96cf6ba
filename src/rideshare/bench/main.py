"""Benchmark 2 from start to end: find or start the stack, measure, print, save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rideshare.bench.common import (
    event_loop_name,
    make_console,
    parse_counts,
    reachable,
    run_async,
    sigterm_as_interrupt,
)
from rideshare.bench.report import print_table, tables_for
from rideshare.bench.results import machine, write_result
from rideshare.bench.run import SCENARIOS, Target, measure
from rideshare.bench.runner import Bounds
from rideshare.bench.stack import OwnStack
from rideshare.bench.topology import read_stack_json

DEFAULT_ORCHESTRATOR = "http://127.0.0.1:8090"


def parse_scenarios(text: str) -> list[str]:
    if text.strip() in ("", "all"):
        return list(SCENARIOS)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return chosen


def _external_target(gateway: str, orchestrator: str | None, run_dir: Path | None) -> Target:
    """A running stack: the orchestrator's URL from the option, else from stack.json."""
    from rideshare.config import Settings

    run_dir = run_dir or Settings().run_dir
    state = read_stack_json(run_dir)
    url = orchestrator or (state or {}).get("orchestrator_url") or DEFAULT_ORCHESTRATOR
    return Target(gateway.rstrip("/"), str(url).rstrip("/"), state, False, run_dir)


def run(*, gateway: str, orchestrator: str | None, clients: str, duration: float,
        max_requests: int, scenarios: str, run_dir: Path | None, start_stack: bool,
        keep_data: bool, pg_dsn: str, results_dir: Path | None) -> int:
    """Run benchmark 2; returns the process exit code."""
    console = make_console()
    try:
        counts, chosen = parse_counts(clients), parse_scenarios(scenarios)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    bounds = Bounds(duration, max_requests)
    sigterm_as_interrupt()
    stack = OwnStack() if start_stack else None
    try:
        if stack is not None:
            console.print(f"starting a stack of our own ({stack.name}) …")
            stack.up()
            target = Target(stack.gateway_url, stack.orchestrator_url, stack.state(), True,
                            stack.run_dir)
        else:
            target = _external_target(gateway, orchestrator, run_dir)
        problem = run_async(reachable(f"{target.gateway_url}/api/v1/_count"))
        if problem:
            console.print(f"[red]Nothing answers at {target.gateway_url}[/] ({problem}). Start "
                          "RideShare (`rideshare up --detach`), point --gateway at it, or pass "
                          "--start-stack.")
            return 2
        info = machine()
        measured = run_async(measure(target, chosen, counts, bounds, pg_dsn, keep_data,
                                     console))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as exc:  # the stack did not start, seeding was refused
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        if stack is not None:
            stack.close(console)
    document: dict[str, Any] = {
        "benchmark": "rideshare", "machine": info, "event_loop": event_loop_name(),
        "options": {"duration_s": duration, "clients": counts, "max_requests": max_requests,
                    "scenarios": chosen, "own_stack": start_stack,
                    "gateway": target.gateway_url, "orchestrator": target.orchestrator_url},
        **measured,
    }
    for table in tables_for(document):
        print_table(console, table)
    path = write_result("rideshare", document, results_dir)
    console.print(f"results: {path}")
    return 0
