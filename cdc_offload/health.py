"""What /healthz and /readyz answer from: a few timestamps the loop and the reader keep fresh."""

from __future__ import annotations

from typing import Literal

from cdc_offload.clock import SYSTEM_CLOCK, Clock

Role = Literal["starting", "active", "standby", "stopped"]


class Health:
    def __init__(self, stall_after: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._stall_after = stall_after
        # Bound once: the reader calls `reader_alive` for every item it hands over.
        self._now = clock.monotonic
        self._loop_tick = self._now()
        self._reader_seen: float | None = None
        self.role: Role = "starting"
        self.writer_connected = False

    def loop_ticked(self) -> None:
        self._loop_tick = self._now()

    # Called by the reader thread for every item: a plain attribute store, atomic in CPython, so
    # the hot path takes no lock.
    def reader_alive(self) -> None:
        self._reader_seen = self._now()

    def reader_lost(self) -> None:
        self._reader_seen = None

    def healthy(self) -> bool:
        """The loop ticks, and while active the reader delivers (heartbeats count)."""
        now = self._now()
        if now - self._loop_tick > self._stall_after:
            return False
        if self.role != "active":
            return self.role != "stopped"
        seen = self._reader_seen
        return seen is not None and now - seen <= self._stall_after

    def ready(self) -> bool:
        """Connected to both servers and either leading or standing by."""
        if self.role == "standby":
            return self.writer_connected
        return self.role == "active" and self.writer_connected and self.healthy()
