"""Dispatch rounds handed to AWS and not committed yet, oldest first.

A round is committed only after every older one (the checkpoint moves forward only), and each of
its rows holds the checkpoint at its own start until then (Maxwell's rule)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from cdc_offload.faults import crash_point
from cdc_offload.model import Checkpoint, Delivery, Job, Resolution
from cdc_offload.policy import resolve


@dataclass(frozen=True, slots=True)
class Round:
    number: int
    to_send: list[Job]
    # Left to Moodle (skipped, undecodable, raced): recorded in the same commit.
    decided: list[Resolution]
    # Where its rows start: the checkpoint may not pass them until the round is committed.
    holds: list[Checkpoint]
    deliveries: Future[list[Delivery]] | None
    # The `sent` mark each sent row carries in the outbox (claim-first), by outbox id.
    marks: dict[int, int] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.deliveries is None or self.deliveries.done()

    @property
    def outbox_ids(self) -> set[int]:
        return {job.outbox.id for job in self.to_send} | {r.outbox_id for r in self.decided}

    def resolutions(self, sink: str) -> list[Resolution]:
        """Every row's final word; waits for AWS's answer (each call is bounded by the sink's deadline)."""
        if self.deliveries is None:
            return list(self.decided)
        deliveries = self.deliveries.result()
        crash_point("after_dispatch")
        return self.decided + resolve(self.to_send, deliveries, self.marks, sink)


class RoundsInFlight:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._rounds: deque[Round] = deque()

    def __bool__(self) -> bool:
        return bool(self._rounds)

    def __len__(self) -> int:
        return len(self._rounds)

    @property
    def full(self) -> bool:
        return len(self._rounds) >= self._limit

    def room(self, size: int) -> int:
        """Jobs the next round may take: rounds with AWS at the same time share the sink's calls,
        so together they stay within what it can answer inside one deadline."""
        return size - sum(len(round_.to_send) for round_ in self._rounds)

    def add(self, round_: Round) -> None:
        self._rounds.append(round_)

    def oldest_answered(self) -> bool:
        return bool(self._rounds) and self._rounds[0].answered

    def pop_oldest(self) -> Round:
        return self._rounds.popleft()

    def carry(self, outbox_ids: Iterable[int]) -> bool:
        """Whether a round in flight carries any of these rows (the same row INSERTed again)."""
        ids = set(outbox_ids)
        return any(not round_.outbox_ids.isdisjoint(ids) for round_ in self._rounds)

    def abandon(self, sink: str) -> list[Resolution]:
        """The primary failed: every round's rows, to be suppressed once it is back (rounds still
        with AWS may be accepted; they are never sent again)."""
        rows: list[Resolution] = []
        while self._rounds:
            rows += self._rounds.popleft().resolutions(sink)
        return rows

    def holds(self) -> Iterator[Checkpoint]:
        for round_ in self._rounds:
            yield from round_.holds
