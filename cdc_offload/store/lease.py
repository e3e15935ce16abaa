"""Leadership: the consumer lock (GET_LOCK, held as long as the connection lives) and its lease.

The lease is the server's `wait_timeout` on our connection: a session idle that long is closed by
the server, and the lock with it. A healthy leader talks at least every third of it; a frozen one
(SIGSTOP, a paused VM, a half-open link) loses the lock, so a standby can take over."""

from __future__ import annotations

from cdc_offload.clock import Clock
from cdc_offload.store.sql import Cursor
from cdc_offload.store.values import LeadershipLost


class Lease:
    """When our connection last talked to the primary, and so when it must talk again."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self.last_used = clock.monotonic()

    @property
    def server_timeout(self) -> int:
        """The `wait_timeout` that enforces the lease on the server (whole seconds, at least 1)."""
        return max(1, round(self.seconds))

    def used(self) -> None:
        """The primary heard from us just now: the lease counts from here."""
        self.last_used = self._clock.monotonic()

    def renewal_due(self) -> bool:
        """A third of the lease has passed in silence: talk now, with two thirds still to spare."""
        return self._clock.monotonic() - self.last_used >= self.seconds / 3

    def expired(self) -> bool:
        """Silent for the whole lease: the server has closed the session, and the lock is gone."""
        return self._clock.monotonic() - self.last_used >= self.seconds


class ConsumerLock:
    """The named lock only the active consumer holds (one per consumer name)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def try_acquire(self, cursor: Cursor) -> bool:
        cursor.execute("SELECT GET_LOCK(%s, 0)", (self.name,))
        row = cursor.fetchone()
        return bool(row and row[0] == 1)

    def check(self, cursor: Cursor) -> None:
        """Raise `LeadershipLost` unless this connection holds the lock now. Run inside every
        writing transaction, so an instance that lost leadership cannot commit anything."""
        cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,))
        row = cursor.fetchone()
        if not row or row[0] != 1:
            raise LeadershipLost("this instance no longer holds the consumer lock; another may be active")
