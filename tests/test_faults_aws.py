"""AWS down for a whole upload, with moto behind a proxy that refuses connections: nothing is
suppressed, every row is left for Moodle within the deadline, the breaker opens; AWS back, new
users are offloaded again by the same process."""

from __future__ import annotations

import time

import pytest

from cdc_offload.demo.stack import MoodleDatabase
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check, report
from tests.faults.proxy import FaultProxy
from tests.faults.scenario import Upload, make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import SidecarProcess, sidecar_env
from tests.support import wait_for

DEADLINE = 2.0
BREAKER = {"sink": {"breaker_failures": 3, "breaker_cooldown": 3.0}, "lock_lease": 10.0}


def _latencies(sidecar: SidecarProcess, upload: Upload) -> list[float]:
    """Seconds from each row's commit on the primary to the sidecar's log line that resolved it."""
    resolved = {e["outbox_id"]: e["_at"] for e in sidecar.named("outbox_row_resolved")}
    return sorted(resolved[i] - upload.created_at[i] for i in upload.outbox_ids)


@pytest.mark.slow
def test_aws_down_for_the_whole_upload_then_back(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    queue_url = make_queue(False, "outage")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", moto_port, "aws") as aws:
        env = sidecar_env(moodle, queue_url, f"http://{aws.host}:{aws.port}", aws_deadline=DEADLINE)
        sidecar = SidecarProcess(env, name="outage", overrides=BREAKER).start()
        sidecar.wait_leading()
        aws.down()  # connection refused, for the whole upload
        # At a pace the reader keeps up with, so the time measured is the sidecar's hold on a row.
        upload = Upload(moodle, 200, start=400_000, pace=0.02).start()
        ids = upload.join()
        wait_handled(moodle, settings.state_schema, ids, timeout=90)
        metrics = sidecar.metrics()
        assert metrics["cdc_offload_aws_breaker_open"] == 1.0, "the breaker is open in the metrics"
        verdict = check(moodle, ids, accepted_by_sqs(queue_url), settings.state_schema)
        verdict.assert_nothing_lost()
        assert not verdict.offloaded and len(verdict.left_for_moodle) == len(ids), verdict
        wait_for(lambda: len(sidecar.named("outbox_row_resolved")) >= len(ids), 10, "the resolutions logged")
        latencies = _latencies(sidecar, upload)
        # Every row was handed back within two dispatch rounds (the one running when it was read,
        # then its own; each is bounded by the deadline) plus the reader's lag behind the upload
        # (up to ~1 s on two loaded cores): far inside Moodle's 5-minute cron interval.
        rounds = [
            round(e["_at"] - s["_at"], 2)
            for s, e in zip(sidecar.named("batch_dispatching"), sidecar.named("batch_committed"), strict=False)
        ]
        assert max(rounds) <= DEADLINE + 0.5, rounds
        assert latencies[-1] <= 2 * DEADLINE + 2.0, latencies[-5:]
        breaker_fallbacks = metrics['cdc_offload_aws_errors_total{code="BreakerOpen"}']

        # AWS is back. No restart: once the cooldown has passed, the next round goes through
        # (half-open), succeeds, and the breaker closes.
        aws.up()
        time.sleep(BREAKER["sink"]["breaker_cooldown"] + 0.5)  # the cooldown the breaker waits out
        back = Upload(moodle, 50, start=401_000, pace=0.01).start().join()
        wait_handled(moodle, settings.state_schema, back)
        wait_for(lambda: sidecar.metrics()["cdc_offload_aws_breaker_open"] == 0.0, 10, "the breaker closed")
        assert sidecar.terminate() == 0

    verdict_back = check(moodle, back, accepted_by_sqs(queue_url), settings.state_schema)
    verdict_back.assert_nothing_lost()
    assert len(verdict_back.offloaded) == len(back) and verdict_back.duplicates == 0, verdict_back
    assert sorted(accepted_by_sqs(queue_url)) == sorted(back), "nothing of the outage reached AWS later"
    report(
        "AWS down for a 200-user upload, then back (no restart)",
        suppressed_during_outage=len(verdict.offloaded),
        left_for_moodle=len(verdict.left_for_moodle),
        lost=len(verdict.lost),
        duplicates=verdict.duplicates,
        longest_round_seconds=max(rounds),
        max_seconds_to_fallback=round(latencies[-1], 2),
        median_seconds_to_fallback=round(latencies[len(latencies) // 2], 2),
        rows_failed_fast_by_the_open_breaker=int(breaker_fallbacks),
        offloaded_after_recovery=len(verdict_back.offloaded),
    )
