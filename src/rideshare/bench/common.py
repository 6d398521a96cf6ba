"""Small things both benchmarks need: option parsing, the HTTP client, the event loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def parse_counts(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; a clear error for anything else."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of client counts") from None
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"{text!r}: client counts are positive integers, e.g. 1,8,32")
    return counts


def http_client(clients: int, base_url: str = "") -> httpx.AsyncClient:
    """One keep-alive client with a connection per concurrent client: none is opened or closed
    while the clock runs, as a real service's client pool would behave."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients,
                            keepalive_expiry=60))


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401 - installed with uvicorn[standard]
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run with uvloop when it is there (the services run on it, and the load generator shares
    the CPUs with them, so a cheaper client loop leaves more for the system under test)."""
    if event_loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def sigterm_as_interrupt() -> None:
    """A SIGTERM ends the run like Ctrl-C, so the same clean-up (stack down, scratch database
    dropped) runs."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
