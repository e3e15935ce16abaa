"""In-memory stand-ins the loop's unit and property tests run on: a clock the test moves, and the
primary as the loop sees it (`MemoryStore`, in memory_store.py, where a test checks it against
the real store)."""

from __future__ import annotations

from tests.support.memory_store import MemoryStore

__all__ = ["FakeClock", "MemoryStore"]


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds
