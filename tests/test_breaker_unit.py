"""The circuit breaker on a clock the test moves: no AWS, no sleep."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cdc_offload.dispatch import CircuitBreaker, Dispatcher
from cdc_offload.metrics import Metrics
from cdc_offload.model import Delivery, Job
from cdc_offload.sinks import BREAKER_OPEN, UNREACHABLE
from tests.support.loop_fakes import FakeClock

THRESHOLD = 3
COOLDOWN = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(THRESHOLD, COOLDOWN, clock)


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD):
        breaker.record(outage=True)
    assert breaker.is_open


def test_opens_after_threshold_outages_in_a_row(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD - 1):
        breaker.record(outage=True)
        assert not breaker.is_open and breaker.allows_call()
    breaker.record(outage=True)
    assert breaker.is_open and not breaker.allows_call()


def test_a_success_resets_the_count_of_outages(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD - 1):
        breaker.record(outage=True)
    breaker.record(outage=False)
    for _ in range(THRESHOLD - 1):
        breaker.record(outage=True)
    assert not breaker.is_open and breaker.allows_call()


def test_stays_open_for_its_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    _open(breaker)
    clock.advance(COOLDOWN - 0.001)
    assert not breaker.allows_call()
    clock.advance(0.001)
    assert breaker.allows_call(), "half-open at the end of the cooldown"


def test_only_monotonic_time_counts(breaker: CircuitBreaker, clock: FakeClock) -> None:
    _open(breaker)
    clock._wall += 10 * COOLDOWN  # this host's wall clock jumps: no effect on a duration
    assert not breaker.allows_call()


def test_half_open_probe_that_succeeds_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    _open(breaker)
    clock.advance(COOLDOWN)
    assert breaker.allows_call()
    breaker.record(outage=False)
    assert not breaker.is_open and breaker.allows_call()
    # Closed for real: it takes the full threshold again to reopen.
    for _ in range(THRESHOLD - 1):
        breaker.record(outage=True)
    assert not breaker.is_open


def test_half_open_probe_that_fails_reopens_it_for_another_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    _open(breaker)
    clock.advance(COOLDOWN + 5)
    assert breaker.allows_call()
    breaker.record(outage=True)  # one outage is enough while half-open
    assert breaker.is_open and not breaker.allows_call()
    clock.advance(COOLDOWN - 1)
    assert not breaker.allows_call(), "the new cooldown counts from the failed probe"
    clock.advance(1)
    assert breaker.allows_call()


class _Sink:
    """A sink that is down, or up; counts its calls."""

    name = "fake"
    round_limit = 10

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        self.calls += 1
        if self.down:
            return [Delivery(job.outbox.id, accepted=False, error_code=UNREACHABLE) for job in jobs]
        return [Delivery(job.outbox.id, accepted=True) for job in jobs]

    def close(self) -> None:
        pass


class _Outbox:
    def __init__(self, outbox_id: int) -> None:
        self.id = outbox_id


class _Job:
    def __init__(self, outbox_id: int) -> None:
        self.outbox = _Outbox(outbox_id)


def test_the_dispatcher_does_not_call_aws_while_it_is_open(clock: FakeClock) -> None:
    sink = _Sink()
    dispatcher = Dispatcher(sink, CircuitBreaker(THRESHOLD, COOLDOWN, clock), Metrics())  # type: ignore[arg-type]
    jobs: list[Job] = [_Job(1)]  # type: ignore[list-item]
    for _ in range(THRESHOLD):
        assert dispatcher.deliver(jobs)[0].error_code == UNREACHABLE
    assert sink.calls == THRESHOLD
    assert dispatcher.deliver(jobs) == [Delivery(1, accepted=False, error_code=BREAKER_OPEN)]
    assert sink.calls == THRESHOLD, "refused without a call"
    clock.advance(COOLDOWN)
    sink.down = False
    assert dispatcher.deliver(jobs) == [Delivery(1, accepted=True)]
    assert sink.calls == THRESHOLD + 1
    dispatcher.close()
