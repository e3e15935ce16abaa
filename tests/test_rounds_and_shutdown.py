"""Two ways the checkpoint and the suppressions could slip, on real servers and a real process:

- a round being started while the same outbox id is still with AWS commits that older round
  first: the checkpoint of that commit must still hold the new round's rows (a crash right after
  it must re-read them);
- SIGTERM while the primary refuses the drain's commit: the suppressions are retried within the
  grace period, as the lock holder; if the primary stays away, one log line, a count, a non-zero
  exit."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from cdc_offload.demo.moodle import create_user_iomad, create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.runtime import EXIT_UNSUPPRESSED
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check
from tests.faults.proxy import FaultProxy
from tests.faults.scenario import make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import Link, SidecarProcess, sidecar_env
from tests.support import ledger


def _reinsert(admin: Any, prefix: str, outbox_id: int, newcomers: list[str]) -> list[int]:
    """ONE transaction: the outbox row deleted and inserted again with its id (a restore), then new
    users with their credential rows. Returns the new rows' outbox ids."""
    ids = []
    admin.begin()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE copied AS SELECT * FROM {prefix}email WHERE id = %s", (outbox_id,))
        cursor.execute(f"DELETE FROM {prefix}email WHERE id = %s", (outbox_id,))
        cursor.execute(f"INSERT INTO {prefix}email SELECT * FROM copied")
        cursor.execute("DROP TEMPORARY TABLE copied")
        for name in newcomers:
            cursor.execute(
                f"INSERT INTO {prefix}user (auth, confirmed, mnethostid, username, password, firstname, lastname, "
                "email, timecreated, timemodified) "
                "VALUES ('manual', 1, 1, %s, '', 'Ada', 'L', %s, UNIX_TIMESTAMP(), UNIX_TIMESTAMP())",
                (name, f"{name}@example.org"),
            )
            cursor.execute(
                f"INSERT INTO {prefix}email (templatename, modifiedtime, subject, body, userid, due, companyid) "
                "VALUES ('user_create', UNIX_TIMESTAMP(), 's', '<p>password: Pw#round</p>', %s, UNIX_TIMESTAMP(), 1)",
                (cursor.lastrowid,),
            )
            ids.append(int(cursor.lastrowid))
    admin.commit()
    return ids


@pytest.mark.slow
def test_a_crash_after_committing_the_older_round_re_reads_the_round_being_started(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    queue_url = make_queue(True, "overlap")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    admin = moodle.admin()
    with FaultProxy("127.0.0.1", moto_port, "aws") as aws:
        # AWS slow enough that the first round is still out when the same row comes again.
        aws.slow(1.0)
        env = sidecar_env(moodle, queue_url, f"http://{aws.host}:{aws.port}")
        first = SidecarProcess(env, name="overlap", crash_at="after_commit").start()
        first.wait_leading()
        _, restored = create_user_iomad(admin, make_users(1, start=500_000)[0])
        first.wait_event("batch_dispatching", 30)
        # The same id again, and two new users in the same transaction: they form one round with
        # it, which commits the first round before it starts (where this process dies).
        newcomers = _reinsert(admin, moodle.prefix, restored, ["newcomer1", "newcomer2"])
        assert first.wait_exit(30) == -signal.SIGKILL
        aws.slow(0)
        second = SidecarProcess(env, name="after-crash").start()
        second.wait_leading()
        wait_handled(moodle, settings.state_schema, [restored, *newcomers], timeout=30)
        assert second.terminate() == 0
    admin.close()
    recorded = ledger(moodle, settings.state_schema)
    assert all(recorded[i]["status"] == "offloaded" for i in newcomers), recorded
    verdict = check(moodle, [restored, *newcomers], accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict


def _stop_while_the_primary_refuses(
    moodle: MoodleDatabase, aws_endpoint: str, grace: float, primary_back: bool
) -> tuple[SidecarProcess, int, list[int], str]:
    queue_url = make_queue(False, "drain")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    admin = moodle.admin()
    with (
        FaultProxy("127.0.0.1", moto_port, "aws") as aws,
        FaultProxy(moodle.server.host, moodle.server.port, "primary") as primary,
    ):
        aws.slow(0.5)
        env = sidecar_env(
            moodle,
            queue_url,
            f"http://{aws.host}:{aws.port}",
            writer=Link(moodle.writer, primary.host, primary.port),
            shutdown_grace=grace,
        )
        sidecar = SidecarProcess(env, name="drain").start()
        sidecar.wait_leading()
        ids = [o for _, o in create_users_bulk(admin, make_users(5, start=510_000), moodle.prefix)]
        sidecar.wait_event("batch_dispatching", 30)
        primary.down()  # AWS accepts the round; its commit on the primary fails
        sidecar.wait_event("recovering", 30)
        os.kill(sidecar.pid, signal.SIGTERM)
        sidecar.wait_event("stop_requested", 10)
        if primary_back:
            primary.up()
        code = sidecar.wait_exit(grace + 30)
    admin.close()
    return sidecar, code, ids, queue_url


@pytest.mark.slow
def test_sigterm_while_the_primary_refuses_retries_the_suppressions_within_the_grace(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    sidecar, code, ids, queue_url = _stop_while_the_primary_refuses(moodle, aws_endpoint, 20.0, primary_back=True)
    assert code == 0, sidecar.stderr_lines[-5:]
    schema = f"cdc_{moodle.database}"
    verdict = check(moodle, ids, accepted_by_sqs(queue_url), schema)
    verdict.assert_nothing_lost()
    assert len(verdict.offloaded) == len(ids) and verdict.duplicates == 0, verdict


@pytest.mark.slow
def test_sigterm_with_the_primary_gone_for_good_says_so_once_and_exits_non_zero(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    sidecar, code, ids, queue_url = _stop_while_the_primary_refuses(moodle, aws_endpoint, 2.0, primary_back=False)
    assert code == EXIT_UNSUPPRESSED
    (said,) = sidecar.named("exit_with_unsuppressed_rows")
    assert said["rows"] == len(ids) and said["level"] == "error"
    assert not [line for line in sidecar.stderr_lines if "Traceback" in line]
    schema = f"cdc_{moodle.database}"
    verdict = check(moodle, ids, accepted_by_sqs(queue_url), schema)
    verdict.assert_nothing_lost()
    # Claim-first: the rows AWS accepted are still claimed (hidden from IOMAD's task), never
    # forgotten: the next start, with the primary back, resolves every one of them.
    assert {ledger(moodle, schema)[i]["status"] for i in ids} == {"claimed"}
    restarted = SidecarProcess(sidecar_env(moodle, queue_url, aws_endpoint), name="after-exit").start()
    restarted.wait_leading()
    wait_handled(moodle, schema, ids, timeout=30)
    assert restarted.terminate() == 0
    after = check(moodle, ids, accepted_by_sqs(queue_url), schema)
    after.assert_nothing_lost()
    # A standard queue cannot say whether it has them: Moodle sends them too, counted uncertain
    # (the log line at exit said how many).
    assert {ledger(moodle, schema)[i]["status"] for i in ids} == {"uncertain"}
    assert len(after.accepted_and_queued) == len(ids), after
