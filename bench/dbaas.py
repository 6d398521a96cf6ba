"""Benchmark 1: the DBaaS through the orchestrator vs the same work on PostgreSQL.

For each client count it measures ``POST /api/v1/db/write`` (one user insert per request) and
``POST /api/v1/db/read`` (one user selected by key) on the orchestrator, then the same insert
and select done directly with psycopg on a pool of the same size, in a scratch database with the
workers' schema and the same durability (autocommit, ``synchronous_commit = on``).

    .venv/bin/python bench/dbaas.py                      # starts and removes its own stack
    .venv/bin/python bench/dbaas.py --against http://127.0.0.1:8090 --run-dir .run
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from psycopg_pool import AsyncConnectionPool

from rideshare.bench.common import (
    DEFAULT_PG_DSN,
    HttpClients,
    event_loop_name,
    make_console,
    parse_counts,
    reachable,
    run_async,
    sigterm_as_interrupt,
)
from rideshare.bench.direct import open_pool, pool_size, scratch_database, server_facts
from rideshare.bench.load import Op, Outcome
from rideshare.bench.report import CellProgress, print_table, tables_for
from rideshare.bench.results import machine, write_result
from rideshare.bench.runner import Bounds, run_cell
from rideshare.bench.topology import direct_topology, read_stack_json, rideshare_topology
from rideshare.devstack import OwnStack

SCENARIOS = ("write", "read")
SEED_USERS = 200
#: A stored password hash has this shape (pbkdf2_sha256$1000$<salt>$<hash>); its length matters
#: for the row size, its value does not.
PASSWORD_HASH = "pbkdf2_sha256$1000$" + "a" * 32 + "$" + "b" * 64
JSON = {"content-type": "application/json"}
INSERT_USER = "INSERT INTO users (username, password_hash, created_seq) VALUES (%s, %s, %s)"
SELECT_USER = "SELECT username, password_hash FROM users WHERE username = %s"

console = make_console()


class Names:
    """Usernames written by one system: new ones for writes, acknowledged ones for reads."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.counter = itertools.count(1)
        self.written: list[str] = []  # acknowledged
        self.issued: list[str] = []  # sent, whatever the answer: what clean-up deletes

    def next(self) -> str:
        name = f"{self.tag}-{next(self.counter)}"
        self.issued.append(name)
        return name


def user_insert(name: str) -> dict[str, Any]:
    return {"op": "insert", "table": "users",
            "values": {"username": name, "password_hash": PASSWORD_HASH}}


def rideshare_ops(http: HttpClients, names: Names) -> dict[str, Op]:
    async def write(c: int) -> Outcome:
        name = names.next()
        r = await http[c].post("/api/v1/db/write", headers=JSON,
                            content=orjson.dumps({"ops": [user_insert(name)]}))
        if r.status_code == 200:
            names.written.append(name)
        return r.status_code

    async def read(c: int) -> Outcome:
        body = {"table": "users", "columns": ["username", "password_hash"],
                "where": {"username": random.choice(names.written)}}
        r = await http[c].post("/api/v1/db/read", headers=JSON, content=orjson.dumps(body))
        return r.status_code

    return {"write": write, "read": read}


def direct_ops(pool: AsyncConnectionPool, names: Names, seq: itertools.count[int]) -> dict[str, Op]:
    async def write(_: int) -> Outcome:
        name = names.next()
        async with pool.connection() as conn:
            await conn.execute(INSERT_USER, (name, PASSWORD_HASH, next(seq)))
        names.written.append(name)
        return 200

    async def read(_: int) -> Outcome:
        async with pool.connection() as conn:
            cur = await conn.execute(SELECT_USER, (random.choice(names.written),))
            return 200 if await cur.fetchone() else 404

    return {"write": write, "read": read}


async def seed(orchestrator: str, pg_dsn: str, dbname: str, rs: Names, direct: Names,
               seq: itertools.count[int]) -> None:
    """Users to read from the first read cell on, in both systems."""
    async with httpx.AsyncClient(base_url=orchestrator, timeout=30) as http:
        for _ in range(SEED_USERS // 100):
            batch = [rs.next() for _ in range(100)]
            r = await http.post("/api/v1/db/write", json={"ops": [user_insert(n) for n in batch]})
            r.raise_for_status()
            rs.written.extend(batch)
    async with open_pool(pg_dsn, dbname, 1) as pool, pool.connection() as conn:
        batch = [direct.next() for _ in range(SEED_USERS)]
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_USER, [(n, PASSWORD_HASH, next(seq)) for n in batch])
        direct.written.extend(batch)


async def forget(orchestrator: str, names: list[str]) -> None:
    """Delete the users a run wrote on a stack that is not our own (a few large writes)."""
    ops = [{"op": "delete", "table": "users", "where": {"username": {"in": names[i:i + 1000]}}}
           for i in range(0, len(names), 1000)]
    async with httpx.AsyncClient(base_url=orchestrator, timeout=60) as http:
        for i in range(0, len(ops), 50):
            (await http.post("/api/v1/db/write", json={"ops": ops[i:i + 50]})).raise_for_status()


@dataclass
class Run:
    """What the cells of one run share."""

    orchestrator: str
    stack_state: dict[str, Any] | None
    pg_dsn: str
    dbname: str
    bounds: Bounds
    progress: CellProgress
    rs_names: Names
    direct_names: Names
    seq: itertools.count[int]


async def pair_of_cells(run: Run, scenario: str, n: int) -> list[dict[str, Any]]:
    """The scenario at ``n`` clients on RideShare, then directly (back to back, so that both
    see the same machine)."""
    async with httpx.AsyncClient(timeout=10) as control:
        topology = await rideshare_topology(control, run.orchestrator, run.stack_state,
                                            run.pg_dsn)
    async with HttpClients(n, run.orchestrator) as http:
        op = rideshare_ops(http, run.rs_names)[scenario]
        rs = await run_cell("rideshare", scenario, n, op, {200}, topology, run.bounds,
                            run.progress)
    size = pool_size(n, await server_facts(run.pg_dsn))
    async with open_pool(run.pg_dsn, run.dbname, size) as pool:
        topology = await direct_topology(run.pg_dsn, run.dbname)
        op = direct_ops(pool, run.direct_names, run.seq)[scenario]
        direct = await run_cell("direct", scenario, n, op, {200}, topology, run.bounds,
                                run.progress, pool_size=size)
    return [rs, direct]


async def measure(orchestrator: str, stack_state: dict[str, Any] | None, clients: list[int],
                  bounds: Bounds, pg_dsn: str, keep_data: bool) -> dict[str, Any]:
    facts = await server_facts(pg_dsn)
    tag = uuid.uuid4().hex[:8]
    cells: list[dict[str, Any]] = []
    progress = CellProgress(console, len(SCENARIOS) * len(clients) * 2)
    async with scratch_database(pg_dsn) as dbname:
        run = Run(orchestrator, stack_state, pg_dsn, dbname, bounds, progress,
                  Names(f"dbaas-{tag}-rs"), Names(f"dbaas-{tag}-direct"),
                  itertools.count(1_000_000))
        try:
            await seed(orchestrator, pg_dsn, dbname, run.rs_names, run.direct_names, run.seq)
            with progress.running():
                for scenario in SCENARIOS:
                    for n in clients:
                        cells += await pair_of_cells(run, scenario, n)
        finally:
            if not keep_data and run.rs_names.issued:
                console.print(f"deleting the {len(run.rs_names.issued):,} users this run wrote …")
                await forget(orchestrator, run.rs_names.issued)
    return {"postgres": facts, "cells": cells}


def main(
    duration: Annotated[float, typer.Option(help="seconds per cell (at most)")] = 5.0,
    clients: Annotated[str, typer.Option(help="concurrent clients, comma-separated")] = "1,8,32",
    max_requests: Annotated[int, typer.Option(help="requests per cell (at most)")] = 20_000,
    against: Annotated[str | None, typer.Option(
        help="a running orchestrator's URL: measure it instead of starting a stack")] = None,
    run_dir: Annotated[Path | None, typer.Option(
        help="with --against: the stack's run directory (stack.json gives the part pids)")] = None,
    pg_dsn: Annotated[str, typer.Option(help="PostgreSQL for the direct baseline")] =
        DEFAULT_PG_DSN,
    keep_data: Annotated[bool, typer.Option(
        "--keep-data", help="with --against: keep the users written (else deleted at the end)")] =
        False,
    results_dir: Annotated[Path | None, typer.Option(help="where the JSON goes")] = None,
) -> None:
    """Measure db/write and db/read through the orchestrator next to direct psycopg."""
    code = run(duration=duration, clients=clients, max_requests=max_requests, against=against,
               run_dir=run_dir, pg_dsn=pg_dsn, keep_data=keep_data, results_dir=results_dir)
    if code:
        raise typer.Exit(code)


def run(*, duration: float, clients: str, max_requests: int, against: str | None,
        run_dir: Path | None, pg_dsn: str, keep_data: bool, results_dir: Path | None) -> int:
    """Run benchmark 1; returns the process exit code."""
    try:
        counts = parse_counts(clients)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    bounds = Bounds(duration, max_requests)
    sigterm_as_interrupt()
    stack = None if against else OwnStack()
    try:
        if stack is not None:
            console.print(f"starting a stack of our own ({stack.name}) …")
            stack.up()
            orchestrator, state = stack.orchestrator_url, stack.state()
        else:
            orchestrator, state = (against or "").rstrip("/"), read_stack_json(run_dir)
        problem = run_async(reachable(f"{orchestrator}/health"))
        if problem:
            console.print(f"[red]The orchestrator at {orchestrator} is not answering[/] "
                          f"({problem}).")
            return 2
        info = machine()
        measured = run_async(measure(orchestrator, state, counts, bounds, pg_dsn,
                                     keep_data or stack is not None))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as exc:  # the stack did not start
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        if stack is not None:
            stack.close(console)
    document = {
        "benchmark": "dbaas", "machine": info, "event_loop": event_loop_name(),
        "options": {"duration_s": duration, "clients": counts, "max_requests": max_requests,
                    "against": against, "own_stack": stack is not None},
        **measured,
    }
    for table in tables_for(document):
        print_table(console, table)
    path = write_result("dbaas", document, results_dir)
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    typer.run(main)
