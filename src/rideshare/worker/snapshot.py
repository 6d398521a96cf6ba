"""A new slave's copy: a consistent snapshot of the master's database, streamed in bounded chunks
while the master goes on committing writes.

The slave asks through ``writeQ``, so the request is ordered with the writes. When the master
reaches it (between two group commits) it opens a ``REPEATABLE READ`` transaction on a connection
of its own and exports its snapshot (``pg_export_snapshot()``), reading the log position in the
same statement: the copy reflects exactly that position. A background task then runs ``psql``
once per table, each importing that snapshot, and sends what ``COPY ... TO STDOUT`` writes in
chunks of at most 1 MiB to the slave's private queue. The master's event loop only moves bytes;
PostgreSQL and psql do the per-row work, in their own processes.

The slave's queue holds a few chunks at most and refuses more (``reject-publish``), which is the
back-pressure: the sender waits and sends again. A queue that has vanished (the slave died) ends
the stream. A request carries an expiry, so one that nobody waits for any more is never served.

On the slave, the chunks go straight into ``COPY ... FROM STDIN`` inside one transaction that
first empties every table, with foreign-key triggers off (the master checked every row), and
ends by recording the snapshot's log position: a copy is loaded whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import psycopg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from psycopg import sql

from rideshare.messages import SnapshotRequest
from rideshare.messaging import message
from rideshare.protocol import KIND_SNAPSHOT, PROTOCOL_VERSION
from rideshare.worker.store import SNAPSHOT_TABLES, Store

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # the most one message carries
QUEUE_CHUNKS = 8  # chunks the broker holds for one slave at most
IDLE_TIMEOUT_S = 30.0  # a stream that sends nothing for this long is given up
STREAM_DEADLINE_S = 1800.0
REQUEST_TTL_S = 60.0  # a request not reached by then is dropped, unserved


class SnapshotFailed(Exception):
    """The copy could not be had this time; the slave asks again."""


@dataclass(frozen=True)
class SnapshotInfo:
    position: int
    epoch: int
    bytes: int
    seconds: float


def request_body(reply_to: str, expires_at: float) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": KIND_SNAPSHOT, "reply_to": reply_to,
            "expires_at": expires_at}


# --- the master's side --------------------------------------------------------------------------


class SnapshotSource:
    """Serves snapshot requests on the master, each in a task of its own."""

    def __init__(self, connection: AbstractRobustConnection, dsn: str, psql: Path) -> None:
        self._connection = connection
        self._dsn = dsn
        self._psql = psql
        self._streams: set[asyncio.Task[None]] = set()
        self.last: SnapshotInfo | None = None

    async def begin(self, request: SnapshotRequest) -> None:
        """Fix the snapshot now (between two group commits), and stream it in the background."""
        reply_to = request.reply_to
        if request.expires_at < time.time():
            log.info("a snapshot request for %s expired before it was reached: not served",
                     reply_to)
            return
        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur = await conn.execute(
                "SELECT pg_export_snapshot(), position, epoch FROM log_state WHERE id = 1")
            row = await cur.fetchone()
            assert row is not None
        except BaseException:
            await conn.close()
            raise
        snapshot_id, position, epoch = row
        task = asyncio.create_task(self._stream(conn, snapshot_id, position, epoch, reply_to),
                                   name=f"snapshot-to-{reply_to}")
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)

    async def close(self) -> None:
        for task in list(self._streams):
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)

    async def _stream(self, conn: psycopg.AsyncConnection[Any], snapshot_id: str, position: int,
                      epoch: int, reply_to: str) -> None:
        started = time.monotonic()
        channel = await self._connection.channel(publisher_confirms=True,
                                                 on_return_raises=True)
        sent = 0
        try:
            send = _Sender(channel, reply_to, started + STREAM_DEADLINE_S)
            await send.part("begin", orjson.dumps({"position": position, "epoch": epoch,
                                                   "tables": list(SNAPSHOT_TABLES)}))
            sizes = {}
            for table in SNAPSHOT_TABLES:
                sizes[table] = await self._copy_table(table, snapshot_id, send)
                sent += sizes[table]
            await send.part("end", orjson.dumps({"bytes": sizes}))
            self.last = SnapshotInfo(position, epoch, sent, time.monotonic() - started)
            log.info("snapshot at log position %s sent to %s: %.1f MiB in %.1f s", position,
                     reply_to, sent / (1 << 20), self.last.seconds)
        except _Gone:
            log.warning("the slave waiting on %s has gone: snapshot stream stopped", reply_to)
        except Exception as exc:
            log.exception("snapshot stream to %s failed", reply_to)
            with contextlib.suppress(Exception):
                await _Sender(channel, reply_to, time.monotonic() + 5).part(
                    "abort", orjson.dumps({"error": repr(exc)}))
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
            with contextlib.suppress(Exception):
                await conn.close()  # ends the exporting transaction

    async def _copy_table(self, table: str, snapshot_id: str, send: _Sender) -> int:
        command = [str(self._psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self._dsn,
                   "-c", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                   "-c", f"SET TRANSACTION SNAPSHOT '{snapshot_id}'",
                   "-c", f'COPY "{table}" TO STDOUT', "-c", "COMMIT"]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=CHUNK_BYTES)
        assert proc.stdout is not None and proc.stderr is not None
        total = 0
        try:
            buffer = bytearray()
            while True:
                data = await proc.stdout.read(CHUNK_BYTES - len(buffer))
                if data:
                    buffer += data
                if buffer and (len(buffer) >= CHUNK_BYTES or not data):
                    await send.part("data", bytes(buffer), table=table)
                    total += len(buffer)
                    buffer.clear()
                if not data:
                    break
            err = await proc.stderr.read()
            if await proc.wait():
                raise SnapshotFailed(f"psql copying {table} failed: {err.decode()[-500:]}")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return total


class _Gone(Exception):
    """The slave's queue no longer exists."""


class _Sender:
    """Sends the parts of one stream, in order, waiting while the slave's queue is full."""

    def __init__(self, channel: AbstractChannel, reply_to: str, deadline: float) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self._deadline = deadline
        self._seq = 0

    async def part(self, kind: str, body: bytes, table: str = "") -> None:
        headers: dict[str, Any] = {"part": kind, "seq": self._seq, "table": table}
        self._seq += 1
        delay = 0.01
        while True:
            msg = aio_pika.Message(body, headers=headers, message_id=uuid.uuid4().hex)
            try:
                await self._channel.default_exchange.publish(
                    msg, routing_key=self._reply_to, mandatory=True, timeout=30)
                return
            except aio_pika.exceptions.PublishError as exc:
                raise _Gone from exc
            except aio_pika.exceptions.DeliveryError:  # the queue is full: wait, send again
                if time.monotonic() > self._deadline:
                    raise SnapshotFailed("the slave took too long to load the copy") from None
                await asyncio.sleep(delay)
                delay = min(0.2, delay * 2)


# --- the slave's side ---------------------------------------------------------------------------


async def receive_snapshot(connection: AbstractRobustConnection, write_queue: str,
                           store: Store, timeout_s: float) -> SnapshotInfo:
    """Ask the master for a copy through ``writeQ`` and load it into ``store`` (everything in it
    replaced, in one transaction). Raises ``SnapshotFailed`` when it cannot be had this time."""
    started = time.monotonic()
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=4)
        queue = await channel.declare_queue(
            f"snapshot.{uuid.uuid4().hex}", exclusive=True, auto_delete=True,
            arguments={"x-max-length": QUEUE_CHUNKS, "x-overflow": "reject-publish"})
        parts: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_part(incoming: AbstractIncomingMessage) -> None:
            parts.put_nowait(incoming)

        await queue.consume(on_part)
        await channel.default_exchange.publish(
            message(request_body(queue.name, time.time() + min(REQUEST_TTL_S, timeout_s)),
                    expiration=min(REQUEST_TTL_S, timeout_s)),
            routing_key=write_queue)
        first = await _next(parts, timeout_s)
        if first.headers.get("part") != "begin":
            raise SnapshotFailed(f"the stream began with {first.headers.get('part')!r}")
        head = orjson.loads(first.body)
        await first.ack()
        loaded = await _load(store, parts, head["position"], head["epoch"])
        return SnapshotInfo(head["position"], head["epoch"], loaded,
                            time.monotonic() - started)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _next(parts: asyncio.Queue[AbstractIncomingMessage],
                timeout_s: float) -> AbstractIncomingMessage:
    try:
        return await asyncio.wait_for(parts.get(), timeout_s)
    except TimeoutError:
        raise SnapshotFailed(f"no part of the snapshot came within {timeout_s:.0f} s") from None


async def _load(store: Store, parts: asyncio.Queue[AbstractIncomingMessage], position: int,
                epoch: int) -> int:
    conn = store.conn
    received: dict[str, int] = {}
    async with conn.transaction(), conn.cursor() as cursor:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in SNAPSHOT_TABLES)))
        incoming = await _next(parts, IDLE_TIMEOUT_S)
        while (kind := incoming.headers.get("part")) == "data":
            table = str(incoming.headers.get("table"))
            if table not in SNAPSHOT_TABLES:
                raise SnapshotFailed(f"a chunk for an unknown table {table!r}")
            async with cursor.copy(sql.SQL("COPY {} FROM STDIN").format(
                    sql.Identifier(table))) as copy:
                while kind == "data" and incoming.headers.get("table") == table:
                    await copy.write(incoming.body)
                    received[table] = received.get(table, 0) + len(incoming.body)
                    await incoming.ack()  # frees a place in the queue: the master sends more
                    incoming = await _next(parts, IDLE_TIMEOUT_S)
                    kind = incoming.headers.get("part")
        if kind == "abort":
            raise SnapshotFailed(f"the master gave up: {incoming.body.decode()[:300]}")
        if kind != "end":
            raise SnapshotFailed(f"an unexpected part {kind!r} in the stream")
        expected = {k: v for k, v in orjson.loads(incoming.body)["bytes"].items() if v}
        if expected != received:
            raise SnapshotFailed(f"the copy is incomplete: {received} of {expected}")
        await incoming.ack()
        await conn.execute("UPDATE log_state SET position = %s, epoch = %s WHERE id = 1",
                           (position, epoch))
    return sum(received.values())
