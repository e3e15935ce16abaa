"""Rows between the correlator and a dispatch round: paired and ready, undecodable (left to Moodle
with the next commit), or waiting for their user's department to reach the replica. Each holds the
checkpoint at its own start while it is here, and while the round that takes it is being started."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cdc_offload.clock import Clock
from cdc_offload.model import Checkpoint, Job, Reason, Resolution, Status
from cdc_offload.policy import left_to_moodle

# How often rows waiting for their user's department are looked up again.
DEFER_RETRY_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Batch:
    """What one round takes: jobs to send, and undecodable rows to record with it."""

    jobs: list[Job]
    unusable: list[Resolution]
    holds: list[Checkpoint]


class Staging:
    def __init__(self, clock: Clock, defer_limit: float) -> None:
        self._clock = clock
        # Past this, a row still waiting for its department is left to Moodle (the pair window).
        self._defer_limit = defer_limit
        self._ready: dict[int, Job] = {}
        self._unusable: dict[int, Resolution] = {}
        self._unusable_starts: dict[int, Checkpoint] = {}
        self._deferred: dict[int, Job] = {}
        self._deferred_since: dict[int, float] = {}
        self._deferred_retry_at = 0.0
        # Where the rows of the round being started begin, while they are in neither the ready set
        # nor a round: a commit made meanwhile must not pass them.
        self._starting: list[Checkpoint] = []

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    @property
    def has_work(self) -> bool:
        return bool(self._ready or self._unusable)

    def add_ready(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self._ready[job.outbox.id] = job

    def add_unusable(self, resolution: Resolution, start: Checkpoint) -> None:
        self._unusable[resolution.outbox_id] = resolution
        self._unusable_starts[resolution.outbox_id] = start

    @contextmanager
    def taking(self, size: int) -> Iterator[Batch]:
        """Up to `size` ready jobs and every undecodable row, holding the checkpoint at their
        starts until the round that takes them is in flight (or they are put back)."""
        ids = list(itertools.islice(self._ready, size))
        jobs = [self._ready.pop(outbox_id) for outbox_id in ids]
        unusable = list(self._unusable.values())
        holds = [job.start for job in jobs] + list(self._unusable_starts.values())
        self._unusable.clear()
        self._unusable_starts.clear()
        self._starting = holds
        try:
            yield Batch(jobs, unusable, holds)
        finally:
            self._starting = []

    def addressed(self, job: Job) -> None:
        """Its recipients are known: it no longer counts as waiting for its department."""
        self._deferred_since.pop(job.outbox.id, None)

    def defer(self, job: Job) -> Resolution | None:
        """Look it up again later; left to Moodle once it waited longer than the pair window."""
        now = self._clock.monotonic()
        since = self._deferred_since.setdefault(job.outbox.id, now)
        if now - since > self._defer_limit:
            del self._deferred_since[job.outbox.id]
            return left_to_moodle(job, Status.SKIPPED, Reason.DEPARTMENT_UNKNOWN)
        self._deferred[job.outbox.id] = job
        return None

    def retry_deferred(self) -> None:
        now = self._clock.monotonic()
        if self._deferred and now >= self._deferred_retry_at:
            self._deferred_retry_at = now + DEFER_RETRY_SECONDS
            self._ready.update(self._deferred)
            self._deferred.clear()

    def holds(self) -> Iterator[Checkpoint]:
        yield from (job.start for job in self._ready.values())
        yield from self._unusable_starts.values()
        yield from (job.start for job in self._deferred.values())
        yield from self._starting
