"""Remove one test stack's queues, ZooKeeper subtree and copies (settings from the env): every
server of its workers is stopped, and their data directories deleted."""

from __future__ import annotations

import asyncio

from rideshare.config import get_settings
from rideshare.devstack import remove_names

if __name__ == "__main__":
    asyncio.run(remove_names(get_settings()))
