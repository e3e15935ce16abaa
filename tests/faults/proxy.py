"""A TCP proxy (asyncio, in a thread of its own) between the sidecar and a server, able to cut,
stall, slow and refuse connections on command. One proxy per link, so a fault hits exactly one
link: the reader's replica, the writer's primary, or the way to AWS.

- `cut()`: abort every open connection (both sides get a reset), new ones are let through.
- `stall()`: open connections stop forwarding in both directions, sockets stay open (a silent
  dead link: no FIN, no RST); connections made afterwards are not stalled. `unstall()` undoes it.
- `slow(seconds)`: every chunk is held that long before it is forwarded (0 to stop).
- `down()`: stop listening and cut everything (connection refused); `up()` listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from cdc_offload.sandbox import free_port


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()
        # A stalled pump waits on `flowing`: let it see the abort and end.
        self.flowing.set()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.host = "127.0.0.1"
        self.port = free_port()
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"fault-{name}", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._links: set[_Link] = set()
        self._delay = 0.0

    # -- life -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults -----------------------------------------------------------------------------
    def cut(self) -> int:
        """Abort every open connection; returns how many were cut."""
        return int(self._call(self._cut()))

    def stall(self) -> int:
        return int(self._call(self._stall(True)))

    def unstall(self) -> int:
        return int(self._call(self._stall(False)))

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    def down(self) -> None:
        self._call(self._down())

    def up(self) -> None:
        self._call(self._listen())

    @property
    def open_links(self) -> int:
        return len(self._links)

    # -- inside the loop --------------------------------------------------------------------
    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)

    async def _down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        await self._cut()

    async def _cut(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    async def _stall(self, stalled: bool) -> int:
        for link in self._links:
            if stalled:
                link.flowing.clear()
            else:
                link.flowing.set()
        return len(self._links)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, upstream_writer)
        link.flowing.set()
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, link),
                self._pump(upstream_reader, client_writer, link),
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await link.flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other (a half-open link is not what either peer expects).
            link.abort()
