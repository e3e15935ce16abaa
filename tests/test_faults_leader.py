"""One active consumer: two real processes, GET_LOCK on the writer connection. The standby takes
over when the active one is killed; a frozen leader (SIGSTOP) loses the lock when its lease runs
out, and the commit it tries after SIGCONT is refused."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from cdc_offload.demo.moodle import create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check, report
from tests.faults.scenario import Upload, make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import Event, SidecarProcess, sidecar_env, wait_until
from tests.support import wait_for

LEADERSHIP = {"standby_poll": 0.3, "lock_lease": 4.0}


def _emitted(event: Event) -> datetime:
    """When the process itself wrote the line. `_at` is when this test read it, which for a line
    written just before a SIGKILL can be after the kill: it cannot order two processes' actions."""
    return datetime.fromisoformat(event["ts"])


def _dispatch_times(process: SidecarProcess) -> list[datetime]:
    return [_emitted(e) for e in process.named("batch_dispatching")]


@pytest.mark.slow
def test_standby_takes_over_when_the_active_one_is_killed(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    queue_url = make_queue(True, "leader")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint, aws_deadline=2)
    first = SidecarProcess(env, name="first", overrides=LEADERSHIP).start()
    first.wait_leading()
    second = SidecarProcess(env, name="second", overrides=LEADERSHIP).start()
    second.wait_event("standing_by", 30)
    assert not second.named("leading")

    upload = Upload(moodle, 400, start=300_000, pace=0.003).start()
    wait_for(lambda: len(first.named("batch_committed")) >= 3, 60, "the first instance at work")
    killed = time.monotonic()
    first.kill()
    took_over = second.wait_leading(30)
    takeover = took_over["_at"] - killed
    ids = upload.join()
    wait_handled(moodle, settings.state_schema, ids)
    assert second.terminate() == 0

    # Only one ever dispatched: every send of the first came before the second held the lock, and
    # the second sent only once it held it (the first is reaped, so all its lines are in).
    led_from = _emitted(took_over)
    assert _dispatch_times(first), "the first was at work when it was killed"
    assert max(_dispatch_times(first)) < led_from
    assert _dispatch_times(second), "the standby did the rest of the work"
    assert min(_dispatch_times(second)) >= led_from
    assert takeover < LEADERSHIP["standby_poll"] + 3.0, f"takeover took {takeover:.2f}s"
    verdict = check(moodle, ids, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict
    report(
        "two instances, active one SIGKILLed mid-upload",
        kills=1,
        takeover_seconds=round(takeover, 2),
        **verdict.numbers(),
    )


@pytest.mark.slow
def test_a_frozen_leader_loses_the_lock_and_its_late_commit_is_refused(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    queue_url = make_queue(True, "frozen")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint, aws_deadline=1)
    lease: dict[str, Any] = {"standby_poll": 0.3, "lock_lease": 3.0}
    # The leader freezes itself right before its commit (SIGSTOP to itself), AWS having accepted.
    frozen = SidecarProcess(env, name="frozen", overrides=lease, pause_at="before_commit").start()
    frozen.wait_leading()
    standby = SidecarProcess(env, name="standby", overrides=lease).start()
    standby.wait_event("standing_by", 30)

    ids = [o for _, o in create_users_bulk(moodle.admin(), make_users(20, start=310_000))]
    frozen.wait_event("batch_dispatching", 30)
    assert wait_until(lambda: frozen.process_state() == "T", 10), "the leader froze before its commit"
    frozen_at = time.monotonic()
    assert sorted(accepted_by_sqs(queue_url)) == sorted(ids), "AWS accepted the batch before the freeze"

    # The lease runs out on the server, the lock goes with the frozen leader's session, and the
    # standby takes over from the checkpoint: it sends again (the FIFO dedup id makes that a no-op
    # at AWS) and suppresses.
    took_over = standby.wait_leading(30)
    wait_handled(moodle, settings.state_schema, ids)
    takeover = took_over["_at"] - frozen_at

    frozen.resume()  # SIGCONT: it goes on exactly at its commit
    refused = frozen.wait_event("recovering", 30)
    frozen.wait_event("standing_by", 30)
    assert not frozen.named("batch_committed"), "the late commit did not happen"
    assert not frozen.named("outbox_row_resolved")

    # When the successor dies the old leader leads again; the batch it kept is already committed.
    standby.kill()
    frozen.wait_leading(30, after=took_over["_at"])
    retried = frozen.wait_event("uncommitted_batch_retried", 30)
    assert retried["jobs"] == 0 and retried["already_committed"] == 20
    assert frozen.terminate() == 0

    verdict = check(moodle, ids, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict
    report(
        "frozen leader (SIGSTOP before its commit), lease 3 s",
        takeover_seconds=round(takeover, 2),
        late_commit_refused_with=refused.get("error"),
        **verdict.numbers(),
    )


def test_a_session_that_no_longer_holds_the_lock_cannot_commit(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    """The IS_USED_LOCK(name) = CONNECTION_ID() check itself, on a session that is alive but lost the
    lock (what a connection-multiplexing proxy or a stray RELEASE_LOCK does): nothing is written."""
    from cdc_offload.demo.moodle import create_user_iomad
    from cdc_offload.model import Checkpoint, Position, Reason, Resolution, Status
    from cdc_offload.store import LeadershipLost, Store

    queue_url = make_queue(False, "lockcheck")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    userid, outbox_id = create_user_iomad(moodle.admin(), make_users(1, start=320_000)[0])
    old, new = Store(settings), Store(settings)
    old.connect()
    new.connect()
    try:
        assert old.try_acquire_lock()
        before = old.load_checkpoint()
        with old._link.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (settings.lock_name,))
        assert new.try_acquire_lock(), "another instance leads now"
        accepted = Resolution(outbox_id, userid, Status.OFFLOADED, Reason.NONE, Position("binlog.000001", 4), 0)
        with pytest.raises(LeadershipLost):
            old.commit([accepted], Checkpoint(Position("binlog.999999", 4)))
        with pytest.raises(LeadershipLost):
            old.ensure_leader()
        assert new.load_checkpoint() == before, "the checkpoint did not move"
    finally:
        old.close()
        new.close()
    verdict = check(moodle, [outbox_id], accepted_by_sqs(queue_url), settings.state_schema)
    assert verdict.left_for_moodle == [outbox_id], "the row was not suppressed: Moodle sends it"
