"""Benchmark 2: the public API through the gateway vs the same data work on
PostgreSQL, scenario by scenario, at each client count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from rideshare.bench import api, baseline
from rideshare.bench.common import HttpClients
from rideshare.bench.direct import open_pool, pool_size, scratch_database, server_facts
from rideshare.bench.report import CellProgress
from rideshare.bench.runner import Bounds, run_cell
from rideshare.bench.topology import direct_topology, rideshare_topology
from rideshare.bench.workload import Names, Seeded

SCENARIOS = ("create-user", "create-ride", "list-rides", "ride-details", "join-ride", "mix")


@dataclass(frozen=True)
class Target:
    """The stack under test."""

    gateway_url: str
    orchestrator_url: str
    stack_state: dict[str, Any] | None
    own: bool
    run_dir: Path | None


@dataclass
class Run:
    """What the cells of one run share: the two systems, their data, the bounds, the display."""

    target: Target
    pg_dsn: str
    dbname: str
    bounds: Bounds
    progress: CellProgress
    control: httpx.AsyncClient  # seeding, clean-up, the cluster view: never measured
    rs_names: Names
    rs_seeded: Seeded
    direct_names: Names
    direct_seeded: Seeded
    counters: baseline.Counters


async def rideshare_cell(run: Run, scenario: str, clients: int) -> dict[str, Any]:
    topology = await rideshare_topology(run.control, run.target.orchestrator_url,
                                        run.target.stack_state, run.pg_dsn)
    async with HttpClients(clients, run.target.gateway_url) as http:
        op = api.ops(http, run.rs_names, run.rs_seeded)[scenario]
        return await run_cell("rideshare", scenario, clients, op, api.EXPECTED[scenario],
                              topology, run.bounds, run.progress)


async def direct_cell(run: Run, scenario: str, clients: int) -> dict[str, Any]:
    size = pool_size(clients, await server_facts(run.pg_dsn))
    async with open_pool(run.pg_dsn, run.dbname, size) as pool:
        topology = await direct_topology(run.pg_dsn, run.dbname)
        op = baseline.ops(pool, run.direct_names, run.direct_seeded, run.counters)[scenario]
        return await run_cell("direct", scenario, clients, op, api.EXPECTED[scenario],
                              topology, run.bounds, run.progress, pool_size=size)


async def measure(target: Target, scenarios: list[str], clients: list[int], bounds: Bounds,
                  pg_dsn: str, keep_data: bool, console: Console) -> dict[str, Any]:
    """Seed both systems, then each scenario at each client count on RideShare and directly,
    back to back so that both see the same machine."""
    facts = await server_facts(pg_dsn)
    cells: list[dict[str, Any]] = []
    rs_names, direct_names = Names("rs"), Names("direct")
    async with scratch_database(pg_dsn) as dbname, \
            httpx.AsyncClient(base_url=target.gateway_url, timeout=30) as control:
        try:
            console.print("seeding users and rides through the gateway, and directly …")
            rs_seeded = await api.seed(control, rs_names)
            counters = baseline.Counters()
            async with open_pool(pg_dsn, dbname, 1) as pool:
                direct_seeded = await baseline.seed(pool, direct_names, counters)
            progress = CellProgress(console, len(scenarios) * len(clients) * 2)
            run = Run(target, pg_dsn, dbname, bounds, progress, control, rs_names, rs_seeded,
                      direct_names, direct_seeded, counters)
            with progress.running():
                for scenario in scenarios:
                    for n in clients:
                        cells.append(await rideshare_cell(run, scenario, n))
                        cells.append(await direct_cell(run, scenario, n))
        finally:
            if not target.own and not keep_data and rs_names.created:
                console.print(f"deleting the {len(rs_names.created):,} users this run created "
                              "(their rides and joins go with them) …")
                await api.delete_users(control, rs_names.created)
    return {"postgres": facts, "cells": cells}
