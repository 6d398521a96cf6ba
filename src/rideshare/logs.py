"""One log format for every part: time, part, logger, level, message."""

from __future__ import annotations

import logging


def configure(part: str, level: int = logging.INFO) -> None:
    """Log this process's own lines (uvicorn keeps its own loggers), unless something already
    configured logging."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=level,
                        format=f"%(asctime)s {part} %(name)s %(levelname)s %(message)s")
    logging.getLogger("kazoo.client").setLevel(logging.WARNING)  # a line per (re)connection
