"""The services' client of the orchestrator's db API: the only way they reach their data.

One keep-alive ``aiohttp.ClientSession`` per process (httpx cost the services about twice the
CPU per request under concurrency). Errors come back as exceptions that carry the
orchestrator's sentence, so that a service can map them onto its own status codes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from rideshare.errors import RideShareError

_JSON = {"content-type": "application/json"}


class DBError(RideShareError):
    """The orchestrator refused or could not serve a request. A service answers its client 503
    for ``DBUnavailable`` and 500 for the others, which mean the service sent something it
    should have checked first (``http/errors.py``)."""


class DBConflict(DBError):
    """A constraint was violated (a duplicate key, a missing referenced row): nothing applied."""

    status = 409


class DBUnavailable(DBError):
    """No master or slave answered in time, or the orchestrator is unreachable."""

    status = 503


class DBBadRequest(DBError):
    """The body was not a valid write or read: a bug in the calling service."""

    status = 400


def _error_for(status: int, content: bytes) -> DBError:
    try:
        message = orjson.loads(content).get("error", content.decode(errors="replace"))
    except (ValueError, AttributeError):
        message = content.decode(errors="replace")
    cls = {409: DBConflict, 400: DBBadRequest}.get(status, DBUnavailable)
    return cls(message, status)


class DBClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=5.0)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop, and kept for the process's life.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # Idle connections are dropped before the server's keep-alive can close them
                # under a request in flight.
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=2.0))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._http().post(self._base_url + path, data=orjson.dumps(body),
                                         headers=_JSON) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DBUnavailable(f"The orchestrator could not be reached: {exc!r}") from exc
        if status != 200:
            raise _error_for(status, content)
        answer: dict[str, Any] = orjson.loads(content)
        return answer
    async def write(self, ops: list[dict[str, Any]], write_id: str | None = None) -> dict[str, Any]:
        """Apply ``ops`` atomically. Returns ``{"position": p, "results": [{"rowcount": n,
        "generated": {...}}, ...]}``. With ``write_id``, a repeat returns the first result."""
        body: dict[str, Any] = {"ops": ops}
        if write_id is not None:
            body["id"] = write_id
        return await self._post("/api/v1/db/write", body)

    async def read(self, query: dict[str, Any]) -> dict[str, Any]:
        """One query: ``{"rows": [...]}`` or, with ``"count": true``, ``{"count": n}``."""
        return await self._post("/api/v1/db/read", query)

    async def read_many(self, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several queries answered from one consistent snapshot."""
        results: list[dict[str, Any]] = (
            await self._post("/api/v1/db/read", {"queries": queries}))["results"]
        return results

    async def clear(self) -> None:
        await self._post("/api/v1/db/clear", {})
