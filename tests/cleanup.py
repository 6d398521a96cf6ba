"""Remove one test stack's queues, ZooKeeper subtree and copies (settings from the env): every
server of its workers is stopped, and their data directories deleted."""

from __future__ import annotations

import asyncio
import contextlib
import shutil

import aio_pika
from kazoo.client import KazooClient

from rideshare.config import get_settings
from rideshare.protocol import queue_names
from rideshare.worker.pgserver import copy_dirs, data_root, remove_copy


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
    root = data_root(s)
    for copy in copy_dirs(root):
        remove_copy(copy)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
