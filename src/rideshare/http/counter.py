"""The ``_count`` request counter of a service, kept in the DBaaS so that it survives a restart.

Writing one row per request would double the load on the master, so each process keeps the
requests it has seen since the last flush in memory and adds them to its service's row in
``request_counts`` at most every ``interval_s`` (~200 ms), as one atomic write. Each flush carries
a write id, and a flush that failed is retried with the same id and the same delta, so the master
applies every delta exactly once: a flush that timed out but was applied anyway is not counted
twice, and one that was not applied is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from rideshare.dbclient import DBClient, DBUnavailable

log = logging.getLogger(__name__)

TABLE = "request_counts"
T = TypeVar("T")


class RequestCounter:
    def __init__(
        self, db: DBClient, service: str, interval_s: float = 0.2, timeout_s: float = 5.0,
        settle_s: float = 0.0,
    ) -> None:
        self._db = db
        self.service = service
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        # With several processes per service, each holds its own delta: _count waits this long
        # first, so that the others' background flushes (every interval_s) have landed.
        self.settle_s = settle_s
        self._pending = 0
        self._inflight: tuple[str, int] | None = None  # (write id, delta) of an unconfirmed flush
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Requests counted here and not yet confirmed by the master."""
        return self._pending + (self._inflight[1] if self._inflight else 0)

    def add(self, n: int = 1) -> None:
        """Count ``n`` requests; synchronous and free of I/O, so it can run on every request."""
        self._pending += n

    def _ops(self, add: int | None = None, set_to: int | None = None) -> list[dict[str, Any]]:
        change: dict[str, Any] = {"add": {"count": add}} if add is not None else {}
        if set_to is not None:
            change = {"set": {"count": set_to}}
        return [
            {"op": "insert", "table": TABLE, "values": {"service": self.service, "count": 0},
             "on_conflict": "ignore"},
            {"op": "update", "table": TABLE, "where": {"service": self.service}, **change},
        ]

    async def _flush_locked(self) -> None:
        if self._inflight is None:
            if self._pending == 0:
                return
            self._inflight = (f"count:{self.service}:{uuid.uuid4().hex}", self._pending)
            self._pending = 0
        write_id, delta = self._inflight
        await self._bounded(self._db.write(self._ops(add=delta), write_id))
        self._inflight = None

    async def _bounded(self, call: Awaitable[T]) -> T:
        """``call`` within ``timeout_s``; a timeout is the DBaaS not answering (a 503)."""
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except TimeoutError:
            raise DBUnavailable(f"no answer within {self.timeout_s} s") from None

    async def flush(self) -> None:
        """Send what has been counted; raises (keeping the delta for a retry) when it fails."""
        async with self._lock:
            await self._flush_locked()

    async def value(self) -> int:
        """The persisted count after flushing this process's delta (for ``GET _count``)."""
        if self.settle_s:
            await asyncio.sleep(self.settle_s)
        async with self._lock:
            await self._flush_locked()
            answer = await self._bounded(self._db.read(
                {"table": TABLE, "columns": ["count"], "where": {"service": self.service}}
            ))
        rows = answer.get("rows") or []
        return int(rows[0]["count"]) if rows else 0

    async def reset(self) -> None:
        """Set the count to 0 and drop what this process had not flushed (``DELETE _count``)."""
        if self.settle_s:
            await asyncio.sleep(self.settle_s)
        async with self._lock:
            self._pending = 0
            self._inflight = None
            await self._bounded(self._db.write(self._ops(set_to=0)))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the delta is kept; the next round retries
                log.warning("could not flush the %s request count (%d kept): %r",
                            self.service, self.pending, exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.service}-count-flush")

    async def stop(self) -> None:
        """Stop the background flush, then flush once more so that a clean stop loses nothing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:  # shutting down; nothing else can be done
            log.warning("lost %d %s requests from the count at shutdown: %r",
                        self.pending, self.service, exc)
