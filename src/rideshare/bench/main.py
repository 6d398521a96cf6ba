"""Benchmark 2 from start to end: find or start the stack, measure, print, save."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

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
from rideshare.bench.topology import read_stack_json
from rideshare.devstack import OwnStack

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


INFRAS = {"single": ["single"], "3-node": ["3-node"], "both": ["single", "3-node"]}


@contextmanager
def infrastructure(kind: str, console: Console) -> Iterator[dict[str, str]]:
    """The settings that reach the infrastructure ``kind`` names: the machine's own RabbitMQ and
    ZooKeeper ("single"), or a 3-node cluster and ensemble started for this run ("3-node")."""
    if kind == "single":
        yield {}
        return
    from rideshare.infra.local import LocalInfra, Ports

    infra = LocalInfra(Path(tempfile.mkdtemp(prefix="rideshare-bench-infra-")), Ports.free(3),
                       f"rs-bench{uuid.uuid4().hex[:6]}")
    try:
        console.print("starting a 3-node RabbitMQ cluster and ZooKeeper ensemble …")
        yield infra.up(3)
    finally:
        infra.destroy()
        shutil.rmtree(infra.run_dir, ignore_errors=True)


def run(*, gateway: str, orchestrator: str | None, clients: str, duration: float,
        max_requests: int, scenarios: str, run_dir: Path | None, start_stack: bool,
        keep_data: bool, pg_dsn: str, results_dir: Path | None, infra: str = "single") -> int:
    """Run benchmark 2 (on each infrastructure asked for); returns the process exit code."""
    console = make_console()
    try:
        counts, chosen = parse_counts(clients), parse_scenarios(scenarios)
        kinds = INFRAS[infra]
    except (ValueError, KeyError) as exc:
        console.print(f"[red]{exc}[/] (--infra is one of {', '.join(INFRAS)})")
        return 2
    if infra != "single":
        start_stack = True  # the 3-node infrastructure is ours: so is the stack on it
    bounds = Bounds(duration, max_requests)
    sigterm_as_interrupt()
    info, cells, options = machine(), [], {}
    try:
        for kind in kinds:
            with infrastructure(kind, console) as env:
                measured = _measure_once(console, env, gateway, orchestrator, run_dir,
                                         start_stack, chosen, counts, bounds, pg_dsn, keep_data)
            cells += [{**cell, "infra": kind} for cell in measured["cells"]]
            options = {"postgres": measured["postgres"], "target": measured["target"]}
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as exc:  # the stack did not start, seeding was refused
        console.print(f"[red]{exc}[/]")
        return 1
    document: dict[str, Any] = {
        "benchmark": "rideshare", "machine": info, "event_loop": event_loop_name(),
        "options": {"duration_s": duration, "clients": counts, "max_requests": max_requests,
                    "scenarios": chosen, "own_stack": start_stack, "infra": kinds,
                    **options["target"]},
        "postgres": options["postgres"], "cells": cells,
    }
    for table in tables_for(document):
        print_table(console, table)
    path = write_result("rideshare", document, results_dir)
    console.print(f"results: {path}")
    return 0


def _measure_once(console: Console, env: dict[str, str], gateway: str,
                  orchestrator: str | None, run_dir: Path | None, start_stack: bool,
                  chosen: list[str], counts: list[int], bounds: Bounds, pg_dsn: str,
                  keep_data: bool) -> dict[str, Any]:
    """One run of every cell, on a stack of our own (on ``env``'s infrastructure) or on the
    running one."""
    stack = OwnStack(overrides=env) if start_stack else None
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
            raise RuntimeError(f"Nothing answers at {target.gateway_url} ({problem}). Start "
                               "RideShare (`rideshare up --detach`), point --gateway at it, or "
                               "pass --start-stack.")
        measured = run_async(measure(target, chosen, counts, bounds, pg_dsn, keep_data,
                                     console))
    finally:
        if stack is not None:
            stack.close(console)
    return {**measured, "target": {"gateway": target.gateway_url,
                                   "orchestrator": target.orchestrator_url}}
