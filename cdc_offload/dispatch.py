"""Hands jobs to the sink, behind a circuit breaker, and reports every outcome to the metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cdc_offload.clock import SYSTEM_CLOCK, Clock
from cdc_offload.metrics import Metrics
from cdc_offload.model import Delivery, Job
from cdc_offload.sinks import BREAKER_OPEN, DAILY_QUOTA, DEADLINE, NO_ANSWER, NOT_ATTEMPTED, UNREACHABLE, Sink

# Dispatch rounds that may be with AWS at once: one being answered while the next one is filled.
ROUNDS_IN_FLIGHT = 2

# Failures that say AWS (or the way to it) is down, as opposed to a refused message. An exhausted
# daily quota counts: every call would fail the same way, so the breaker stops calling for a while.
_OUTAGE_CODES = frozenset(
    {DEADLINE, NO_ANSWER, NOT_ATTEMPTED, UNREACHABLE, DAILY_QUOTA}
    | {"InternalError", "InternalFailure", "ServiceUnavailable"}
)


class RoundSender(Protocol):
    """What the loop hands its rounds to: AWS behind the breaker, or a dry run's stand-in."""

    sink_name: str

    @property
    def round_limit(self) -> int: ...

    def submit(self, jobs: Sequence[Job]) -> Future[list[Delivery]]: ...


class WouldSend:
    """A dry run's stand-in for AWS: every row accepted, nothing called."""

    round_limit = 500

    def __init__(self, sink_name: str) -> None:
        self.sink_name = sink_name

    def submit(self, jobs: Sequence[Job]) -> Future[list[Delivery]]:
        answered: Future[list[Delivery]] = Future()
        answered.set_result([Delivery(job.outbox.id, accepted=True) for job in jobs])
        return answered


class CircuitBreaker:
    """Opens after `threshold` dispatch rounds in a row failed for outage reasons; after `cooldown`
    lets rounds through again (half-open): the first to succeed closes it, one more outage reopens
    it for another `cooldown`. Time is the injected clock's monotonic time."""

    def __init__(self, threshold: int, cooldown: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        # Rounds in flight finish on their own threads.
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allows_call(self) -> bool:
        with self._lock:
            return self._opened_at is None or self._clock.monotonic() - self._opened_at >= self._cooldown

    def record(self, *, outage: bool) -> None:
        with self._lock:
            if not outage:
                self._failures, self._opened_at = 0, None
                return
            self._failures += 1
            if self._opened_at is not None or self._failures >= self._threshold:
                self._opened_at = self._clock.monotonic()


class Dispatcher:
    def __init__(self, sink: Sink, breaker: CircuitBreaker, metrics: Metrics) -> None:
        self._sink = sink
        self._breaker = breaker
        self._metrics = metrics
        self.sink_name = sink.name
        self._rounds = ThreadPoolExecutor(ROUNDS_IN_FLIGHT, thread_name_prefix="dispatch")

    @property
    def round_limit(self) -> int:
        """Most jobs one dispatch round should carry (the sink's throughput times its deadline)."""
        return self._sink.round_limit

    def submit(self, jobs: Sequence[Job]) -> Future[list[Delivery]]:
        """`deliver` on a round thread of its own, so the loop reads on while AWS answers."""
        return self._rounds.submit(self.deliver, list(jobs))

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        if not jobs:
            return []
        if not self._breaker.allows_call():
            deliveries = [Delivery(job.outbox.id, accepted=False, error_code=BREAKER_OPEN) for job in jobs]
        else:
            started = time.perf_counter()
            deliveries = self._sink.deliver(jobs)
            self._metrics.dispatch_seconds.labels(self._sink.name).observe(time.perf_counter() - started)
            failed = [d for d in deliveries if not d.accepted]
            outage = (
                bool(failed) and len(failed) == len(deliveries) and all(d.error_code in _OUTAGE_CODES for d in failed)
            )
            self._breaker.record(outage=outage)
        self._metrics.breaker_open.set(1 if self._breaker.is_open else 0)
        for delivery in deliveries:
            if not delivery.accepted:
                self._metrics.aws_errors.labels(delivery.error_code or "Unknown").inc()
        return deliveries

    def close(self) -> None:
        self._rounds.shutdown(wait=False, cancel_futures=True)
        self._sink.close()
