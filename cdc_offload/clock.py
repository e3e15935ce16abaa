"""The one clock the loop reads: this host's wall time (a row's age, the lag) and a monotonic
time (every duration: holds, pauses, silences, leases). Injected, so a test can move either."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch, as this host believes (compared with binlog timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back (durations only)."""
        ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class OffsetClock(SystemClock):
    """This host's wall clock off by `offset` seconds against everyone else's (NTP lost, a VM
    resumed): what the freshness guard and the lag then see."""

    def __init__(self, offset: float) -> None:
        self._offset = offset

    def wall(self) -> float:
        return time.time() + self._offset


SYSTEM_CLOCK: Clock = SystemClock()
