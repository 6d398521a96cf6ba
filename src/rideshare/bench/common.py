"""Small things both benchmarks need: option parsing, the HTTP client, the event loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

import httpx
from rich.console import Console

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


class HttpClients:
    """One keep-alive ``httpx.AsyncClient`` (one connection) per simulated client.

    Not one shared client: httpx's connection pool costs CPU that grows with the number of
    connections in it (encode/httpx#3215). Measured on the 2-core host against nginx's own
    403: a shared client spends 0.97 ms of CPU per request at 1 concurrent request, 3.7 ms at
    32 and 13.6 ms at 128, so the load generator, not RideShare, would set the pace; a client
    per connection stays at 0.9-1.1 ms at every concurrency. No connection is opened or closed
    while the clock runs (the warm-up opens them).
    """

    def __init__(self, clients: int, base_url: str = "") -> None:
        self.clients = [
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0, connect=5.0),
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1,
                                                  keepalive_expiry=60))
            for _ in range(clients)]

    def __getitem__(self, client: int) -> httpx.AsyncClient:
        return self.clients[client]

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(self, *_: object) -> None:
        for client in self.clients:
            await client.aclose()


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


def make_console() -> Console:
    """A terminal console; when the output is a file or a pipe, wide enough for the tables."""
    console = Console()
    return console if console.is_terminal else Console(width=170)
