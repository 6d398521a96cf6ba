"""How workers are started and killed, behind one small interface (process, docker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class WorkerHandle:
    worker_id: str
    pid: int
    started_at: float


@dataclass(frozen=True)
class CopyState:
    """What a copy left on disk holds: the last epoch and log position it applied."""

    epoch: int
    position: int


class WorkerRuntime(Protocol):
    async def start(self, worker_id: str, adopt_copy: str | None = None) -> WorkerHandle:
        """Start a worker with a PostgreSQL server of its own; with ``adopt_copy``, the copy
        that worker left on disk becomes the new worker's data."""

    async def adopt(self, worker_id: str, pid: int, started_at: float) -> WorkerHandle | None:
        """Take charge of a worker an earlier orchestrator started (``pid`` as its znode
        says); None if it no longer runs."""

    async def kill(self, worker_id: str) -> None:
        """SIGKILL: the crash APIs. Returns once the worker is dead (bounded)."""

    async def stop(self, worker_id: str) -> None:
        """Ask for a graceful stop (scale-down, shutdown)."""

    async def reap(self) -> list[str]:
        """The ids of workers whose process has ended since the last call; forgets them."""

    def alive(self) -> dict[str, WorkerHandle]:
        """Workers whose process runs, by id: a view kept in memory, so it never waits (the one
        call that is not async)."""

    async def copies(self) -> list[str]:
        """The ids of the copies left on disk by workers that do not run (names matched
        exactly: only this deployment's)."""

    async def probe(self, copy_id: str) -> CopyState | None:
        """The epoch and log position a copy holds; None if it could not be read."""

    async def drop_copy(self, copy_id: str) -> None:
        """Remove a dead or retired worker's copy."""
