"""How workers are started and killed, behind one small interface (process now, Docker later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class WorkerHandle:
    worker_id: str
    pid: int
    started_at: float


class WorkerRuntime(Protocol):
    async def start(self, worker_id: str, adopt: bool) -> WorkerHandle:
        """Start a worker; with ``adopt`` it takes over the most advanced existing database."""

    def adopt(self, worker_id: str, pid: int, started_at: float) -> WorkerHandle | None:
        """Take charge of a worker an earlier orchestrator started (``pid`` as its znode
        says); None if it no longer runs."""

    def kill(self, worker_id: str) -> None:
        """SIGKILL: the crash APIs."""

    def stop(self, worker_id: str) -> None:
        """Ask for a graceful stop (scale-down, shutdown)."""

    def reap(self) -> list[str]:
        """The ids of workers whose process has ended since the last call; forgets them."""

    def alive(self) -> dict[str, WorkerHandle]:
        """Workers whose process runs, by id."""

    async def drop_database(self, worker_id: str) -> None:
        """Remove a dead or retired worker's database."""
