"""The baseline: the same data work done straight against PostgreSQL, with what RideShare's
workers use (psycopg 3 async, the schema built by ``rideshare.worker.store`` from
``rideshare.schema``, autocommit, ``synchronous_commit = on``), and none of the layers between.

The scratch database is named so that no stack adopts it, and is dropped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from rideshare.worker.store import Store

#: Connections left free for everyone else (other stacks, psql) when the pool must be capped.
SPARE_CONNECTIONS = 12


def scratch_name() -> str:
    return f"rsbenchdirect_{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def scratch_database(pg_dsn: str) -> AsyncIterator[str]:
    """A new database with RideShare's schema (the workers' own DDL); dropped afterwards."""
    name = scratch_name()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        store = await Store.open(psycopg.conninfo.make_conninfo(pg_dsn, dbname=name))
        await store.close()
        yield name
    finally:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


async def server_facts(pg_dsn: str) -> dict[str, Any]:
    """The settings that decide what a commit costs, and how many connections are free."""
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        facts: dict[str, Any] = {}
        for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method",
                     "max_connections", "superuser_reserved_connections", "shared_buffers"):
            cur = await conn.execute(f"SHOW {name}")  # names are the constants above
            row = await cur.fetchone()
            facts[name] = row[0] if row else None
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity")
        row = await cur.fetchone()
        facts["connections_in_use"] = int(row[0]) if row else 0
    return facts


def pool_size(clients: int, facts: dict[str, Any]) -> int:
    """The pool matches the client count unless the server cannot take that many more
    connections; then it is capped (and the report says so)."""
    free = (int(facts["max_connections"]) - int(facts["superuser_reserved_connections"])
            - int(facts["connections_in_use"]) - SPARE_CONNECTIONS)
    return max(1, min(clients, free))


@asynccontextmanager
async def open_pool(pg_dsn: str, dbname: str, size: int) -> AsyncIterator[AsyncConnectionPool]:
    """``size`` connections opened up front (none is opened while the clock runs)."""
    conninfo = psycopg.conninfo.make_conninfo(pg_dsn, dbname=dbname)
    pool = AsyncConnectionPool(
        conninfo, min_size=size, max_size=size, open=False, timeout=30,
        kwargs={"autocommit": True, "row_factory": tuple_row,
                "options": "-c synchronous_commit=on"})
    await pool.open(wait=True, timeout=60)
    try:
        yield pool
    finally:
        await pool.close()
