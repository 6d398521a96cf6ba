"""Small things both benchmarks need: option parsing, the HTTP client, the event loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson
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


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


class Client:
    """The few calls the scenarios make, over one shared keep-alive ``aiohttp`` session.

    Not httpx: its connection pool costs CPU that grows with the number of connections
    (encode/httpx#3215): measured here against nginx's own 403, 0.97 ms of CPU per request at 1
    concurrent request, 3.7 ms at 32 and 13.6 ms at 128, and the load generator shares the two
    cores with the system it measures. aiohttp stays flat.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def request(self, method: str, path: str, *, content: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      params: dict[str, Any] | None = None) -> Answer:
        async with self._session.request(method, self._base + path, data=content,
                                         headers=headers, params=params) as response:
            return Answer(response.status, await response.read())

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Answer:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Answer:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Answer:
        return await self.request("DELETE", path, **kw)


class HttpClients:
    """What each simulated client sends its requests with (all share one session whose
    connector keeps a connection per client alive; the warm-up opens them)."""

    def __init__(self, clients: int, base_url: str = "") -> None:
        self._clients = clients
        self._base_url = base_url
        self._session: aiohttp.ClientSession | None = None
        self._client: Client | None = None

    def __getitem__(self, client: int) -> Client:
        assert self._client is not None, "use HttpClients as an async context manager"
        return self._client

    async def __aenter__(self) -> HttpClients:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30.0, connect=5.0),
            connector=aiohttp.TCPConnector(limit=self._clients, keepalive_timeout=60))
        self._client = Client(self._session, self._base_url)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()


async def reachable(url: str) -> str | None:
    """None when ``url`` answers (any status below 500), else why not: said before any load
    is sent, rather than as a traceback from the middle of a run."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if r.status_code < 500 else f"GET {url} answered {r.status_code}"


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
