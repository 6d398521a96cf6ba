"""The messages on the queues, typed, and checked where they are consumed.

Both ends use these: the orchestrator builds them, the workers decode them. A worker checks every
message it takes off a queue and never dies of one: a message that is not what its queue carries
raises ``BadMessage``, and the worker sets it aside (dead-letters it) and goes on.

    writeQ     WriteBatch (one or several writes, answered in one reply), SnapshotRequest
               (a new slave's copy), PositionRequest (the master's log position, ordered after
               every write committed before it)
    readQ      ReadBatch (reads answered together, once the slave has applied min_position of
               min_epoch)
    syncQ      SyncBatch (committed log entries of one epoch), Marker (a new master's note to
               itself: everything before it is drained)
    replies    {"ok": true, ...} or {"ok": false, "status": 4xx|503, "error": "..."}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from rideshare.errors import BadRequest
from rideshare.protocol import (
    KIND_MARKER,
    KIND_POSITION,
    KIND_SNAPSHOT,
    KIND_WRITE,
    KIND_WRITES,
    parse_write,
)

MAX_WRITES_PER_MESSAGE = 1024
MAX_READS_PER_MESSAGE = 1024


class BadMessage(ValueError):
    """A message that is not what its queue carries: set aside, never retried."""


@dataclass(frozen=True)
class Write:
    id: str
    ops: list[dict[str, Any]]
    problem: str | None = None  # why its operations cannot be applied: answered with a 400


@dataclass(frozen=True)
class WriteBatch:
    writes: tuple[Write, ...]
    several: bool  # answered as {"epoch", "master", "answers": [...]}, else as the one answer


@dataclass(frozen=True)
class SnapshotRequest:
    reply_to: str
    expires_at: float


@dataclass(frozen=True)
class PositionRequest:
    pass


@dataclass(frozen=True)
class ReadBatch:
    reads: tuple[dict[str, Any], ...]
    min_position: int
    min_epoch: int


@dataclass(frozen=True)
class Entry:
    position: int
    id: str
    ops: list[dict[str, Any]]
    result: dict[str, Any]
    raw: dict[str, Any]  # as it travelled: applied and recorded as it is


@dataclass(frozen=True)
class SyncBatch:
    epoch: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Marker:
    pass


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadMessage("not a JSON object")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"{what} must be an integer")
    return value


def _write(raw: Any) -> Write:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise BadMessage("a write needs a string 'id'")
    ops = raw.get("ops")
    try:
        parse_write({"id": raw["id"], "ops": ops})
    except BadRequest as exc:
        return Write(raw["id"], [], str(exc))
    assert isinstance(ops, list)
    return Write(raw["id"], ops)


def decode_write_queue(body: bytes) -> WriteBatch | SnapshotRequest | PositionRequest:
    message = _object(body)
    kind = message.get("kind")
    if kind == KIND_WRITES:
        writes = message.get("writes")
        if not isinstance(writes, list) or not 0 < len(writes) <= MAX_WRITES_PER_MESSAGE:
            raise BadMessage("'writes' must be a list of 1 to 1024 writes")
        return WriteBatch(tuple(_write(w) for w in writes), several=True)
    if kind == KIND_WRITE:
        return WriteBatch((_write(message),), several=False)
    if kind == KIND_SNAPSHOT:
        reply_to, expires_at = message.get("reply_to"), message.get("expires_at")
        if not isinstance(reply_to, str) or not reply_to or \
                not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise BadMessage("a snapshot request needs 'reply_to' and 'expires_at'")
        return SnapshotRequest(reply_to, float(expires_at))
    if kind == KIND_POSITION:
        return PositionRequest()
    raise BadMessage(f"writeQ carries no message of kind {kind!r}")


def decode_read_queue(body: bytes) -> ReadBatch:
    message = _object(body)
    reads = message.get("reads")
    if not isinstance(reads, list) or not 0 < len(reads) <= MAX_READS_PER_MESSAGE or \
            not all(isinstance(r, dict) for r in reads):
        raise BadMessage("'reads' must be a list of 1 to 1024 read objects")
    return ReadBatch(tuple(reads), _int(message.get("min_position", 0), "'min_position'"),
                     _int(message.get("min_epoch", 0), "'min_epoch'"))


def _entry(raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise BadMessage("a log entry must be an object")
    ops, result = raw.get("ops"), raw.get("result")
    if not isinstance(raw.get("id"), str) or not isinstance(ops, list) or \
            not isinstance(result, dict) or not all(isinstance(op, dict) for op in ops):
        raise BadMessage("a log entry needs 'id', 'ops' and 'result'")
    return Entry(_int(raw.get("position"), "'position'"), raw["id"], ops, result, raw)


def decode_sync_queue(body: bytes) -> SyncBatch | Marker:
    message = _object(body)
    if message.get("kind") == KIND_MARKER:
        return Marker()
    entries = message.get("entries")
    if not isinstance(entries, list) or not entries:
        raise BadMessage("a sync batch needs 'entries', a non-empty list")
    batch = SyncBatch(_int(message.get("epoch"), "'epoch'"), tuple(_entry(e) for e in entries))
    positions = [e.position for e in batch.entries]
    if positions != list(range(positions[0], positions[0] + len(positions))):
        raise BadMessage("a sync batch's positions must follow one another")
    return batch
