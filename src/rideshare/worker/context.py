"""What both roles share: the worker's settings, its database, its broker connection, its log
position (one owner), and the one way out when a role must stop acting at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from rideshare.config import Settings
from rideshare.errors import Fatal
from rideshare.messaging import AMQP_ERRORS, message
from rideshare.worker.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class LogState:
    """The worker's place in the log: the last position its copy holds, and the epoch it was
    written in. Changed only through ``moved_to``."""

    position: int
    epoch: int

    def moved_to(self, position: int, epoch: int) -> None:
        self.position, self.epoch = position, epoch


@dataclass
class Context:
    """What both roles need from the worker that runs them."""

    settings: Settings
    worker_id: str
    store: Store
    connection: AbstractRobustConnection
    log: LogState
    fail: Callable[[Fatal], None]  # ends the worker at once (the main loop does the exit)
    state_changed: Callable[[], None] = field(default=lambda: None)  # republish our znode
    stopping: bool = False  # a role's loops are being stopped on purpose
    quorum: bool = False  # the broker is a cluster: quorum queues (messaging.py)
    dcs: Any = None  # the worker's Coordinator (dcs.py)

    def must_finish(self, seconds: float, what: str) -> Deadline:
        """A watchdog: if ``what`` is not done within ``seconds``, the worker stops at once (a
        database that does not answer must not hold a role hostage)."""
        return Deadline(self, seconds, what)

    def watch(self, task: asyncio.Task[Any], loop: bool = True) -> asyncio.Task[Any]:
        """A role's loop must never end quietly: its failure, or its end (a cancellation that
        came from a library, not from us), ends the worker. ``loop=False``: a one-off task,
        whose failure alone does."""
        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                if loop and not self.stopping:
                    self.fail(Fatal(f"{t.get_name()} was cancelled under us"))
            elif t.exception() is not None:
                log.error("%s failed", t.get_name(), exc_info=t.exception())
                self.fail(Fatal(f"{t.get_name()} failed: {t.exception()!r}"))
            elif loop and not self.stopping:
                self.fail(Fatal(f"{t.get_name()} ended"))
        task.add_done_callback(done)
        return task


class Deadline:
    def __init__(self, ctx: Context, seconds: float, what: str) -> None:
        self._ctx, self._seconds, self._what = ctx, seconds, what
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadline:
        self._handle = asyncio.get_running_loop().call_later(
            self._seconds, lambda: self._ctx.fail(
                Fatal(f"{self._what} took over {self._seconds:.0f} s: giving up the role")))
        return self

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def within(seconds: float, call: Awaitable[T]) -> T:
    """``call``, or TimeoutError after ``seconds``."""
    return await asyncio.wait_for(call, seconds)


async def dead_letter(channel: AbstractChannel, queue: str, body: bytes, reason: str,
                      worker_id: str) -> None:
    """Set a message aside on the dead-letter queue, with why; never raises."""
    try:
        await channel.default_exchange.publish(
            message({"reason": reason, "worker": worker_id, "at": time.time(),
                     "body": body[:65536].decode(errors="replace")}, persistent=True),
            routing_key=queue)
    except AMQP_ERRORS as exc:
        log.warning("could not dead-letter a message (%s): %r", reason, exc)


def error_reply(status: int, sentence: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "status": status, "error": sentence, **extra}


@contextlib.contextmanager
def timing(what: str, slow_s: float = 1.0) -> Iterator[None]:
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    if took > slow_s:
        log.warning("%s took %.2f s", what, took)


__all__ = ["Context", "Deadline", "LogState", "dead_letter", "error_reply", "timing", "within"]
