"""The services' client of the orchestrator's db API: the only way they reach their data.

One keep-alive ``httpx.AsyncClient`` per process. Errors come back as exceptions that carry the
orchestrator's sentence, so that a service can map them onto its own status codes.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson


class DBError(Exception):
    """The orchestrator refused or could not serve a request."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class DBConflict(DBError):
    """A constraint was violated (a duplicate key, a missing referenced row): nothing applied."""

    status = 409


class DBUnavailable(DBError):
    """No master or slave answered in time, or the orchestrator is unreachable."""

    status = 503


class DBBadRequest(DBError):
    """The body was not a valid write or read: a bug in the calling service."""

    status = 400


def _raise_for(response: httpx.Response) -> None:
    try:
        message = response.json().get("error", response.text)
    except (ValueError, AttributeError):
        message = response.text
    cls = {409: DBConflict, 400: DBBadRequest}.get(response.status_code, DBUnavailable)
    raise cls(message, response.status_code)


class DBClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            # Idle connections are dropped before the server's keep-alive (5 s) can close them
            # under a request in flight.
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256,
                                keepalive_expiry=2.0),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(
                path, content=orjson.dumps(body), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise DBUnavailable(f"The orchestrator could not be reached: {exc!r}") from exc
        if response.status_code != 200:
            _raise_for(response)
        return orjson.loads(response.content)

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
        return (await self._post("/api/v1/db/read", {"queries": queries}))["results"]

    async def clear(self) -> None:
        await self._post("/api/v1/db/clear", {})
