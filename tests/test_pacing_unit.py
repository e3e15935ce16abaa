"""When the loop starts a round, on a fake clock: a trickle goes at once; a backlog's few ready
jobs wait a moment for a fuller round while another round is with AWS, never longer."""

from __future__ import annotations

from concurrent.futures import Future

from cdc_offload.model import Checkpoint, Delivery, Job, OutboxRow, Position, UserRow
from cdc_offload.pacing import Pacing
from cdc_offload.rounds import Round, RoundsInFlight
from cdc_offload.staging import Staging
from tests.support.loop_fakes import FakeClock

ROUND_SIZE = 10


def job(outbox_id: int) -> Job:
    user = UserRow(outbox_id, f"u{outbox_id}", "Ada", "L", "ada@example.org", "manual", False, False)
    outbox = OutboxRow(outbox_id, outbox_id, "user_create", None, 0, 1, "s", "b")
    return Job(outbox, user, Checkpoint(Position("binlog.000001", outbox_id)), 0)


def parts(rounds_with_aws: int) -> tuple[FakeClock, Staging, Pacing]:
    clock = FakeClock()
    staging = Staging(clock, 30.0)
    in_flight = RoundsInFlight(3)
    for number in range(rounds_with_aws):
        pending: Future[list[Delivery]] = Future()
        in_flight.add(Round(number, [job(900 + number)], [], [], pending))
    return clock, staging, Pacing(staging, in_flight, ROUND_SIZE, clock)


def test_caught_up_a_ready_job_goes_at_once_even_with_a_round_at_aws() -> None:
    clock, staging, pacing = parts(rounds_with_aws=1)
    staging.add_ready([job(1)])
    assert pacing.send_now(paused=False, more_coming=False, last_event_time=clock.wall())


def test_a_backlog_holds_a_few_ready_jobs_for_a_fuller_round_at_most_the_hold() -> None:
    clock, staging, pacing = parts(rounds_with_aws=1)
    behind = clock.wall() - 60.0
    staging.add_ready([job(1)])
    assert not pacing.send_now(paused=False, more_coming=False, last_event_time=behind)
    clock.advance(Pacing.HOLD_SECONDS / 2)
    assert not pacing.send_now(paused=False, more_coming=False, last_event_time=behind)
    clock.advance(Pacing.HOLD_SECONDS / 2 + 0.001)
    assert pacing.send_now(paused=False, more_coming=False, last_event_time=behind), "held no longer than the hold"


def test_a_full_round_goes_at_once_and_nothing_goes_while_paused_or_more_is_coming() -> None:
    clock, staging, pacing = parts(rounds_with_aws=1)
    staging.add_ready([job(n) for n in range(1, 3)])
    assert not pacing.send_now(paused=False, more_coming=True, last_event_time=clock.wall())
    assert not pacing.send_now(paused=True, more_coming=False, last_event_time=clock.wall())
    staging.add_ready([job(n) for n in range(3, 12)])
    assert pacing.send_now(paused=False, more_coming=True, last_event_time=clock.wall()), "a round's worth is ready"


def test_with_every_round_slot_taken_ready_jobs_wait_for_an_answer() -> None:
    clock, staging, pacing = parts(rounds_with_aws=3)
    staging.add_ready([job(n) for n in range(1, 12)])
    assert not pacing.send_now(paused=False, more_coming=False, last_event_time=clock.wall())
