"""A new slave's copy, against real servers: two workers' own PostgreSQL servers and RabbitMQ.

The master's snapshot is fixed at the moment it is asked for, travels in chunks of at most 1 MiB,
and loads whole on the other side, while the master goes on writing; an expired request is never
served; a stream whose slave has gone stops.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from rideshare.config import Settings
from rideshare.folders import remove_folder
from rideshare.messages import SnapshotRequest, decode_write_queue
from rideshare.worker.pgserver import PostgresServer, bin_dir, data_root, remove_copy
from rideshare.worker.snapshot import CHUNK_BYTES, SnapshotSource, receive_snapshot
from rideshare.worker.store import SNAPSHOT_TABLES, Store


async def checksum(store: Store) -> dict[str, tuple[int, str]]:
    out = {}
    for table in SNAPSHOT_TABLES:
        cur = await store.conn.execute(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
            f" AS sum FROM {table} t")
        row = await cur.fetchone()
        out[table] = (row["n"], row["sum"])
    cur = await store.conn.execute("SELECT position, epoch FROM log_state")
    row = await cur.fetchone()
    out["log_state"] = (row["position"], str(row["epoch"]))
    return out


async def fill(store: Store, rides: int, write_ids: int) -> None:
    """Rows made straight in SQL: what a long-lived master holds (about 4 MiB of COPY text)."""
    await store.conn.execute(
        "INSERT INTO users SELECT 'user' || g, 'hash' || g, g FROM generate_series(1, 500) g")
    await store.conn.execute(
        "INSERT INTO rides SELECT g, 'user' || (1 + g %% 500), 1900000000 + g, 1 + g %% 198,"
        " 1 + (g + 1) %% 198, g FROM generate_series(1, %s) g", (rides,))
    await store.conn.execute(
        "INSERT INTO applied_writes SELECT 'write-' || g, g, '{\"ok\": true}', 1765000000"
        " FROM generate_series(1, %s) g", (write_ids,))
    await store.conn.execute("INSERT INTO id_counters VALUES ('rides.ride_id', %s)", (rides,))
    await store.conn.execute("UPDATE log_state SET position = %s, epoch = 3", (write_ids,))


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings(run_dir=tmp_path)
    root = data_root(settings)
    made = [PostgresServer(settings, root / f"w{uuid.uuid4().hex[:10]}") for _ in range(2)]
    stores = []
    try:
        for server in made:
            await server.prepare()
            await server.start()
            stores.append(await Store.open(server.dsn))
        connection = await aio_pika.connect_robust(settings.amqp_url_list[0])
        yield {"settings": settings, "servers": made, "master": stores[0], "slave": stores[1],
               "connection": connection}
        await connection.close()
    finally:
        for store in stores:
            await store.close()
        for server in made:
            await server.stop()
            remove_copy(server.data_dir)
        remove_folder(root)  # the template too, and its folder under /var/lib/rideshare


async def test_a_copy_is_fixed_when_asked_travels_in_bounded_chunks_and_loads_whole(servers):
    master, slave, connection = servers["master"], servers["slave"], servers["connection"]
    await fill(master, rides=60_000, write_ids=20_000)
    before = await checksum(master)
    source = SnapshotSource(connection, servers["servers"][0].dsn,
                            bin_dir(servers["settings"]) / "psql")
    channel = await connection.channel()
    write_queue = await channel.declare_queue(f"test.writeQ.{uuid.uuid4().hex}", exclusive=True)

    async def master_side(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        """The master reaches the request: the copy is fixed now; then it goes on writing."""
        await source.begin(decode_write_queue(incoming.body))
        await master.conn.execute("INSERT INTO users VALUES ('after-the-snapshot', 'h', 1)")
        await incoming.ack()

    await write_queue.consume(master_side)
    info = await receive_snapshot(connection, write_queue.name, slave, timeout_s=60)
    assert info.position == 20_000 and info.epoch == 3
    assert await checksum(slave) == before, "the copy is the master's state when it was asked"
    cur = await slave.conn.execute("SELECT count(*) AS n FROM users WHERE username = "
                                   "'after-the-snapshot'")
    assert (await cur.fetchone())["n"] == 0
    assert source.last is not None and source.last.bytes > 2 * CHUNK_BYTES
    await channel.close()


async def test_every_chunk_is_at_most_one_mebibyte(servers):
    master, connection = servers["master"], servers["connection"]
    await fill(master, rides=60_000, write_ids=20_000)
    source = SnapshotSource(connection, servers["servers"][0].dsn,
                            bin_dir(servers["settings"]) / "psql")
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await source.begin(SnapshotRequest(queue.name, time.time() + 60))
    parts: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    while not parts or parts[-1][0] != "end":
        assert time.monotonic() < deadline, f"the stream did not end: {parts[-3:]}"
        incoming = await queue.get(fail=False)
        if incoming is None:
            await asyncio.sleep(0.01)
            continue
        parts.append((incoming.headers["part"], len(incoming.body)))
        await incoming.ack()
    data = [size for kind, size in parts if kind == "data"]
    assert parts[0][0] == "begin"
    assert len(data) >= 4 and max(data) <= CHUNK_BYTES
    await channel.close()


async def test_an_expired_request_is_never_served(servers):
    connection = servers["connection"]
    source = SnapshotSource(connection, servers["servers"][0].dsn,
                            bin_dir(servers["settings"]) / "psql")
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await source.begin(SnapshotRequest(queue.name, time.time() - 1))
    await asyncio.sleep(1.0)
    assert await queue.get(fail=False) is None
    assert source.last is None
    await channel.close()


async def test_a_stream_whose_slave_has_gone_stops(servers):
    master, connection = servers["master"], servers["connection"]
    await fill(master, rides=60_000, write_ids=20_000)
    source = SnapshotSource(connection, servers["servers"][0].dsn,
                            bin_dir(servers["settings"]) / "psql")
    channel = await connection.channel()
    queue = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    await source.begin(SnapshotRequest(queue.name, time.time() + 60))
    await asyncio.sleep(0.5)  # the queue fills up; the master waits
    await queue.delete(if_unused=False, if_empty=False)
    deadline = time.monotonic() + 30
    while source._streams and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not source._streams, "the stream ended when its queue went away"
    assert source.last is None, "and it is not counted as sent"
    cur = await master.conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
        " OR state = 'idle in transaction'")
    assert (await cur.fetchone())["n"] == 0, "the exporting transaction has ended"
    await channel.close()
