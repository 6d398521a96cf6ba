"""Remove one test stack's queues, ZooKeeper subtree and databases (settings from the env)."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import psycopg
from kazoo.client import KazooClient
from psycopg import sql

from rideshare.config import get_settings
from rideshare.protocol import queue_names


async def main() -> None:
    s = get_settings()
    connection = await aio_pika.connect(s.amqp_url, timeout=10)
    async with connection:
        for name in queue_names(s.queue_prefix).values():
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
            with contextlib.suppress(Exception):
                channel = await connection.channel()
                await channel.exchange_delete(name)
    zk = KazooClient(hosts=s.zk_hosts, timeout=5)
    zk.start(10)
    zk.delete(s.zk_root, recursive=True)
    zk.stop()
    with psycopg.connect(s.pg_dsn, autocommit=True) as conn:
        names = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                             (s.db_prefix + "_",)).fetchall()
        for (name,) in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    asyncio.run(main())
