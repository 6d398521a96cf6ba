"""Remove one test stack's queues, ZooKeeper subtree and copies (settings from the env): every
server of its workers is stopped, and their data directories deleted."""

from __future__ import annotations

import asyncio

from rideshare.bench.stack import remove_names
from rideshare.config import get_settings

if __name__ == "__main__":
    asyncio.run(remove_names(get_settings()))
