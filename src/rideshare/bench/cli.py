"""The options of ``python -m rideshare.bench`` and ``rideshare bench`` (one function, both)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rideshare.bench.common import DEFAULT_PG_DSN

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DEFAULT_ORCHESTRATOR = "http://127.0.0.1:8090"


def bench(
    gateway: Annotated[str, typer.Option(help="the gateway of a running stack")] =
        DEFAULT_GATEWAY,
    orchestrator: Annotated[str | None, typer.Option(
        help="its orchestrator (worker pids for the CPU table) (default: from stack.json, "
             "else http://127.0.0.1:8090)")] = None,
    clients: Annotated[str, typer.Option(help="concurrent clients, comma-separated")] =
        "1,32,128",
    duration: Annotated[float, typer.Option(help="seconds per cell (at most)")] = 5.0,
    max_requests: Annotated[int, typer.Option(help="requests per cell (at most)")] = 20_000,
    scenarios: Annotated[str, typer.Option(
        help="comma-separated, of create-user, create-ride, list-rides, ride-details, "
             "join-ride, mix")] = "all",
    run_dir: Annotated[Path | None, typer.Option(
        help="the stack's run directory; its stack.json gives the part pids "
             "(default: RIDESHARE_RUN_DIR, i.e. .run)")] = None,
    start_stack: Annotated[bool, typer.Option(
        "--start-stack", help="start a stack of our own on free ports, remove it afterwards")] =
        False,
    keep_data: Annotated[bool, typer.Option(
        "--keep-data", help="on a stack not our own: keep the users and rides created")] =
        False,
    pg_dsn: Annotated[str, typer.Option(help="PostgreSQL for the direct baseline")] =
        DEFAULT_PG_DSN,
    results_dir: Annotated[Path | None, typer.Option(
        help="where the JSON goes (default: bench/results)")] = None,
    infra: Annotated[str, typer.Option(
        help="single: the machine's RabbitMQ and ZooKeeper; 3-node: a 3-node RabbitMQ cluster "
             "(quorum queues) and ZooKeeper ensemble started for the run; both: one after the "
             "other, side by side in one table (implies --start-stack)")] = "single",
) -> None:
    """Benchmark the public API through the gateway next to the same work done directly on
    PostgreSQL; print tables, write JSON to bench/results/."""
    from rideshare.bench.main import run

    code = run(gateway=gateway, orchestrator=orchestrator, clients=clients, duration=duration,
               max_requests=max_requests, scenarios=scenarios, run_dir=run_dir,
               start_stack=start_stack, keep_data=keep_data, pg_dsn=pg_dsn,
               results_dir=results_dir, infra=infra)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """``python -m rideshare.bench``."""
    typer.run(bench)
