"""Connection faults between the sidecar (a real process) and its servers, through a TCP proxy:
the replica link cut and stalled mid-stream, the primary link cut in the middle of a batch."""

from __future__ import annotations

import pytest

from cdc_offload.demo.stack import MoodleDatabase
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check, report
from tests.faults.proxy import FaultProxy
from tests.faults.scenario import Upload, make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import Link, SidecarProcess, sidecar_env
from tests.support import wait_for


def _verdict_clean(moodle: MoodleDatabase, queue_url: str, ids: list[int], schema: str) -> dict[str, int]:
    verdict = check(moodle, ids, accepted_by_sqs(queue_url), schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict
    assert len(verdict.offloaded) == len(ids), verdict
    return verdict.numbers()


@pytest.mark.slow
def test_replica_link_cut_mid_stream_rebuilds_from_the_checkpoint(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    queue_url = make_queue(False, "cut")  # a standard queue: any resend would show as a duplicate
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    with FaultProxy(moodle.server.host, moodle.server.port, "replica") as replica:
        env = sidecar_env(moodle, queue_url, aws_endpoint, source=Link(moodle.reader, replica.host, replica.port))
        sidecar = SidecarProcess(env, name="cut-replica").start()
        sidecar.wait_leading()
        upload = Upload(moodle, 300, start=200_000, pace=0.004).start()
        cuts = 0
        for target in (60, 140, 220):
            wait_for(lambda t=target: upload.created() >= t, 60, f"{target} users created")
            cuts += replica.cut() > 0
            sidecar.wait_event("reader_restart", 30, count=cuts)
        ids = upload.join()
        wait_handled(moodle, settings.state_schema, ids)
        restarts = len(sidecar.named("reader_restart"))
        assert sidecar.terminate() == 0
    numbers = _verdict_clean(moodle, queue_url, ids, settings.state_schema)
    assert restarts >= 3
    report("replica link cut 3 times mid-stream", cuts=3, reader_restarts=restarts, **numbers)


@pytest.mark.slow
def test_replica_link_stalled_is_detected_by_the_read_timeout(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    queue_url = make_queue(False, "stall")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    with FaultProxy(moodle.server.host, moodle.server.port, "replica") as replica:
        env = sidecar_env(
            moodle,
            queue_url,
            aws_endpoint,
            source=Link(moodle.reader, replica.host, replica.port),
            heartbeat=0.5,
            read_timeout=2,
        )
        sidecar = SidecarProcess(env, name="stall-replica").start()
        sidecar.wait_leading()
        upload = Upload(moodle, 200, start=210_000, pace=0.004).start()
        wait_for(lambda: upload.created() >= 80, 60, "80 users created")
        # A silent dead link: no FIN, no RST, no heartbeat. Only the read timeout can tell.
        stalled = replica.stall()
        assert stalled >= 1
        restart = sidecar.wait_event("reader_restart", 20)
        ids = upload.join()
        wait_handled(moodle, settings.state_schema, ids)
        assert sidecar.terminate() == 0
    numbers = _verdict_clean(moodle, queue_url, ids, settings.state_schema)
    report("replica link stalled mid-stream (read timeout 2 s)", detected=bool(restart), **numbers)


@pytest.mark.slow
def test_primary_link_cut_mid_batch_commits_the_accepted_batch_once(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    queue_url = make_queue(False, "primary")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    with (
        FaultProxy(moodle.server.host, moodle.server.port, "primary") as primary,
        FaultProxy("127.0.0.1", moto_port, "aws") as aws,
    ):
        env = sidecar_env(
            moodle,
            queue_url,
            f"http://{aws.host}:{aws.port}",
            writer=Link(moodle.writer, primary.host, primary.port),
        )
        sidecar = SidecarProcess(env, name="cut-primary").start()
        sidecar.wait_leading()
        aws.slow(0.4)  # the batch stays with AWS long enough to cut the primary meanwhile
        upload = Upload(moodle, 30, start=220_000, bulk=30).start()
        ids = upload.join()
        sidecar.wait_event("batch_dispatching", 30)
        assert primary.cut() >= 1, "the writer's connection was open"
        retried = sidecar.wait_event("uncommitted_batch_retried", 30)
        aws.slow(0)
        wait_handled(moodle, settings.state_schema, ids)
        failures = sidecar.named("recovering")
        assert sidecar.terminate() == 0
    assert retried["jobs"] == 30 and retried["already_committed"] == 0
    assert failures, "the commit on the cut link failed"
    numbers = _verdict_clean(moodle, queue_url, ids, settings.state_schema)
    report("primary link cut between dispatch and commit", cuts=1, retried_commit_rows=retried["jobs"], **numbers)
