"""The safe checkpoint (Maxwell's rule): the newest transaction boundary read that is not past any
row still unresolved. This module is the rule's one owner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from cdc_offload.clock import Clock
from cdc_offload.model import Checkpoint, Position

# Where unresolved rows start: the correlator's waiting rows, the staged rows, the rounds in flight.
Holds = Callable[[], Iterable[Checkpoint]]


def safe_checkpoint(last_boundary: Checkpoint, holds: Iterable[Checkpoint]) -> Checkpoint:
    return min((last_boundary, *holds), key=lambda c: c.position)


class CheckpointTracker:
    def __init__(
        self,
        start: Checkpoint,
        holders: Sequence[Holds],
        clock: Clock,
        on_boundary: Callable[[Position], None] | None = None,
    ) -> None:
        self._start = start
        self._holders = holders
        # A replay's progress bar follows the boundaries read.
        self._on_boundary = on_boundary
        self._clock = clock
        self._last_boundary = start
        self._committed = start
        self._committed_at = clock.monotonic()

    def boundary(self, checkpoint: Checkpoint) -> None:
        """A transaction boundary the stream has passed."""
        self._last_boundary = checkpoint
        if self._on_boundary is not None:
            self._on_boundary(checkpoint.position)

    def safe(self) -> Checkpoint:
        return safe_checkpoint(self._last_boundary, (c for holder in self._holders for c in holder()))

    @property
    def committed(self) -> Checkpoint:
        return self._committed

    def seconds_since_commit(self) -> float:
        return self._clock.monotonic() - self._committed_at

    def committed_now(self, checkpoint: Checkpoint | None) -> None:
        self._committed_at = self._clock.monotonic()
        if checkpoint is not None:
            self._committed = checkpoint

    @property
    def progressed(self) -> bool:
        """Whether this session moved the checkpoint (a reader that works again resets the backoff)."""
        return self._committed != self._start
