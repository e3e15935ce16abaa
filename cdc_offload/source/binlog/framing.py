"""MySQL packets straight off the socket: one big buffer filled with `recv_into`, parsed in place.

The reader walks packet headers itself (that loop is the hot path); this module only keeps the
buffer supplied: it moves an incomplete tail to the front, grows the buffer for a packet bigger
than it, and glues a packet the server split at 16 MiB back together.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from cdc_offload.source.binlog.constants import MAX_PACKET_PAYLOAD

# Big enough that one recv usually brings many events; small enough to stay in cache-friendly
# territory and not to matter as resident memory.
DEFAULT_BUFFER = 4 << 20
# Never call recv with less room than this: tiny reads cost a system call per event.
_MIN_READ = 256 << 10


class ConnectionClosed(Exception):
    """The server closed the connection (recv returned no bytes)."""


class PacketStream:
    """The receiving side of the dump connection.

    `refill` returns the (possibly new) buffer with the unparsed bytes that the caller still holds
    (`data[start:stop]`) kept, and at least `need` bytes from `start` on.
    """

    def __init__(
        self, sock: socket.socket, buffer_size: int = DEFAULT_BUFFER, on_wait: Callable[[], None] | None = None
    ) -> None:
        self._sock = sock
        # Called before a read that would block: whoever batches what we yield hands it on now.
        self._on_wait = on_wait
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._default = buffer_size
        self.data = bytearray(buffer_size)
        self._view = memoryview(self.data)

    def close(self) -> None:
        self._view.release()

    def refill(self, start: int, stop: int, need: int) -> tuple[bytearray, int, int]:
        data = self.data
        have = stop - start
        size = len(data)
        if need > size or (size > self._default and have < self._default // 2 and need <= self._default):
            # A packet bigger than the buffer arrived, or one did and has gone: resize.
            new_size = max(need, self._default) if need > size else self._default
            fresh = bytearray(new_size)
            fresh[:have] = data[start:stop]
            self._view.release()
            self.data = data = fresh
            self._view = memoryview(fresh)
            start, stop = 0, have
        elif size - start < need or size - stop < _MIN_READ:
            # Same-size slice assignment is allowed while the memoryview is exported.
            data[:have] = data[start:stop]
            start, stop = 0, have
        view = self._view
        recv_into = self._sock.recv_into
        while stop - start < need:
            if self._on_wait is not None and not self._readable.poll(0):
                self._on_wait()
            received = recv_into(view[stop:])
            if not received:
                raise ConnectionClosed
            stop += received
        return data, start, stop

    def join_split(self, start: int, stop: int) -> tuple[bytes, int, bytearray, int, int]:
        """Read a payload sent as several packets (each 0xFFFFFF bytes but the last).

        Returns the whole payload, how many packets it took (for the sequence ids), and the buffer
        state after the last of them.
        """
        parts: list[bytes] = []
        data = self.data
        while True:
            data, start, stop = self.refill(start, stop, 4)
            length = data[start] | data[start + 1] << 8 | data[start + 2] << 16
            data, start, stop = self.refill(start, stop, 4 + length)
            parts.append(bytes(data[start + 4 : start + 4 + length]))
            start += 4 + length
            if length < MAX_PACKET_PAYLOAD:
                return b"".join(parts), len(parts), data, start, stop
