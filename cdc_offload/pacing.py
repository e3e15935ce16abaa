"""When the loop sends what is ready. Caught up (a trickle), a job goes out as soon as the reader
has nothing more: latency is what matters. Catching up on a backlog while a round is with AWS, a
round of a few jobs would take a round slot for a whole AWS round trip, so ready jobs are held a
moment for a fuller round, well inside the freshness limit."""

from __future__ import annotations

from cdc_offload.clock import Clock
from cdc_offload.rounds import RoundsInFlight
from cdc_offload.staging import Staging


class Pacing:
    # Longest a backlog's ready jobs wait for a fuller round while another round is with AWS.
    HOLD_SECONDS = 0.1
    # The last event read is older than this: the reader is catching up on a backlog.
    BEHIND_SECONDS = 1.0

    def __init__(self, staging: Staging, in_flight: RoundsInFlight, round_size: int, clock: Clock) -> None:
        self._staging = staging
        self._in_flight = in_flight
        self._round_size = round_size
        self._clock = clock
        # Since when jobs have been ready (monotonic): how long they were held for a fuller round.
        self._ready_since = clock.monotonic()

    def room(self) -> int:
        """How many jobs the next round may take (none while every round slot is taken)."""
        return self._in_flight.room(self._round_size)

    def send_now(self, *, paused: bool, more_coming: bool, last_event_time: float | None) -> bool:
        """Start a round now, or hold the ready jobs a moment for a fuller one? With every slot
        taken, the ready jobs wait for the oldest answer. Called once a turn."""
        if not self._staging.ready_count:
            self._ready_since = self._clock.monotonic()
        if paused or not self._staging.has_work:
            return False
        room = self.room()
        if self._in_flight.full or room <= 0:
            return False
        if self._staging.ready_count >= room:
            return True
        if more_coming:
            return False
        if not self._in_flight:
            return True
        behind = last_event_time is not None and self._clock.wall() - last_event_time > self.BEHIND_SECONDS
        return not behind or self._clock.monotonic() - self._ready_since >= self.HOLD_SECONDS
