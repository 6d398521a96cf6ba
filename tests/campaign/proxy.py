"""A TCP proxy the campaign owns, in front of its RabbitMQ or ZooKeeper, that can cut one process
off while it keeps running.

Every part of the campaign's stack connects through it. ``cut(pid)`` turns that process's
connections into a black hole: what it sends is dropped, nothing reaches it, and new connections it
opens are accepted and never forwarded, as a network partition looks to both ends (each side finds
out only from its own timeouts). ``heal()`` closes the holed connections (their streams lost bytes)
and lets new ones through. The proxy runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import psutil

CHUNK = 65536


@dataclass
class Link:
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    peer_port: int
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    pid: int | None = None
    holed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for side in (self.client, self.upstream):
            if side is not None:
                with contextlib.suppress(Exception):
                    side[1].close()


def owners(ports: set[int]) -> dict[int, int]:
    """The pid that holds each local TCP port (the client end of a loopback connection)."""
    found: dict[int, int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port in ports and conn.pid:
            found[conn.laddr.port] = conn.pid
    return found


class FaultProxy:
    def __init__(self, listen_port: int, upstream_port: int, name: str) -> None:
        self.listen_port, self.upstream_port, self.name = listen_port, upstream_port, name
        self._links: list[Link] = []
        self._cut: set[int] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    def _call(self, coroutine: Any, timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.close()
        self._links.clear()

    def cut(self, pid: int) -> None:
        self._call(self._cut_off(pid))

    def heal(self) -> None:
        self._call(self._heal())

    def cut_pids(self) -> set[int]:
        return set(self._cut)

    async def _cut_off(self, pid: int) -> None:
        self._cut.add(pid)
        pending = {link.peer_port for link in self._links if link.pid is None}
        if pending:
            found = await asyncio.to_thread(owners, pending)
            for link in self._links:
                if link.pid is None:
                    link.pid = found.get(link.peer_port)
        for link in self._links:
            if link.pid == pid:
                link.holed = True

    async def _heal(self) -> None:
        self._cut.clear()
        for link in [link for link in self._links if link.holed]:
            link.close()
            self._links.remove(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_port = writer.get_extra_info("peername")[1]
        link = Link((reader, writer), peer_port)
        self._links.append(link)
        if self._cut:
            link.pid = (await asyncio.to_thread(owners, {peer_port})).get(peer_port)
            link.holed = link.pid in self._cut
        if link.holed:  # accepted, and never forwarded: the far end does not answer (until
            # heal() closes the client socket, which ends this read)
            with contextlib.suppress(Exception):
                while await reader.read(CHUNK):
                    pass
            self._forget(link)
            return
        try:
            link.upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._forget(link)
            return
        link.tasks = [asyncio.create_task(self._pump(link, reader, link.upstream[1])),
                      asyncio.create_task(self._pump(link, link.upstream[0], writer))]

    async def _pump(self, link: Link, source: asyncio.StreamReader,
                    sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                if link.holed:
                    continue  # dropped: a partition loses what is in flight
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not link.holed:  # one end closed: so does the other (a holed link waits to heal)
                self._forget(link)

    def _forget(self, link: Link) -> None:
        for side in (link.client, link.upstream):
            if side is not None:
                with contextlib.suppress(Exception):
                    side[1].close()
        with contextlib.suppress(ValueError):
            self._links.remove(link)
