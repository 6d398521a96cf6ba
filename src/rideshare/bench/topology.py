"""Which processes make up the stack under test, so that each cell can say where the CPU went.

Parts come from ``<run_dir>/stack.json`` (written by ``rideshare up``), workers from the
orchestrator's ``GET /api/v1/cluster``, the workers' PostgreSQL servers as their children (each
worker's postmaster is its child), the broker by its process name. The direct baseline's
PostgreSQL backends come from ``pg_stat_activity`` (the ones connected to its database).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from rideshare.bench.cpu import children_map, pids_by_name, with_descendants
from rideshare.localhost import read_json_object

PART_ORDER = ("gateway", "users", "rides", "orchestrator")


def read_stack_json(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    return read_json_object(run_dir / "stack.json")


@dataclass
class Topology:
    """What one cell ran against: process groups (name -> pids) and the cluster's shape."""

    groups: dict[str, set[int]] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> dict[str, Any]:
        workers = self.cluster.get("workers", [])
        return {"epoch": self.cluster.get("epoch"),
                "masters": sum(w.get("role") == "master" for w in workers),
                "slaves": sum(w.get("role") == "slave" for w in workers)}


async def backend_pids(pg_dsn: str, match: Callable[[str], bool]) -> set[int]:
    """PostgreSQL backend pids whose database name satisfies ``match(datname)``."""
    try:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT pid, datname FROM pg_stat_activity WHERE datname IS NOT NULL")
            return {pid for pid, name in await cur.fetchall() if match(name)}
    except psycopg.Error:
        return set()


async def rideshare_topology(http: httpx.AsyncClient, orchestrator_url: str,
                             stack_state: dict[str, Any] | None, pg_dsn: str) -> Topology:
    """The stack's process groups now (workers can change between cells)."""
    try:
        response = await http.get(f"{orchestrator_url}/api/v1/cluster", timeout=5)
        cluster = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        cluster = {}
    workers = cluster.get("workers", [])
    worker_pids = {int(w["pid"]) for w in workers if w.get("pid")}
    tree = children_map()
    groups: dict[str, set[int]] = {}
    parts = (stack_state or {}).get("parts", {})
    for name in PART_ORDER:
        pid = (parts.get(name) or {}).get("pid")
        if pid:
            groups[name] = with_descendants(int(pid), tree, worker_pids)
    groups["master"] = {int(w["pid"]) for w in workers if w.get("role") == "master"}
    groups["slaves"] = {int(w["pid"]) for w in workers if w.get("role") == "slave"}
    groups["postgres"] = set().union(*(with_descendants(pid, tree, set()) - {pid}
                                       for pid in worker_pids))
    groups["rabbitmq"] = set(pids_by_name("beam.smp"))
    groups["bench client"] = {os.getpid()}
    return Topology(groups, cluster)


async def direct_topology(pg_dsn: str, dbname: str) -> Topology:
    """The baseline's processes: our pool's PostgreSQL backends and the benchmark itself."""
    backends = await backend_pids(pg_dsn, lambda name: name == dbname)
    return Topology({"postgres": backends, "bench client": {os.getpid()}})
