"""Crash safety, with the sidecar as a real process: named crash points (deterministic duplicate
counts) and random SIGKILLs during a 2,000-user upload. After each: nothing lost."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_offload.demo.moodle import create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import SqsReceipts, accepted_by_sqs, check, record_sqs_receipts, report
from tests.faults.scenario import make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import SidecarProcess, sidecar_env
from tests.support import ledger, wait_for

BATCH = 40


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
@pytest.mark.parametrize("point", ["after_claim", "after_dispatch", "before_commit", "after_commit"])
@pytest.mark.slow
def test_named_crash_point_loses_nothing_and_duplicates_exactly_the_window(
    moodle: MoodleDatabase, aws_endpoint: str, point: str, fifo: bool
) -> None:
    queue_url = make_queue(fifo, "crash")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint)

    crashing = SidecarProcess(env, name=f"crash-{point}", crash_at=point).start()
    crashing.wait_leading()
    # One transaction: the whole batch is paired and dispatched in one round, so the window
    # between "AWS accepted" and "committed" holds exactly these rows.
    ids = [outbox for _, outbox in create_users_bulk(moodle.admin(), make_users(BATCH, start=1000))]
    assert crashing.wait_exit(30) == -9, "the crash point killed the process"
    first = accepted_by_sqs(queue_url)
    if point == "after_claim":
        assert not first, "the claim comes before AWS sees anything"
        assert set(claimed_rows(moodle, ids)) == set(ids), "the crash left every row claimed (hidden from the task)"
    else:
        assert sorted(first) == sorted(ids), "AWS accepted the whole batch before the crash"

    restarted = SidecarProcess(env, name=f"restart-{point}").start()
    restarted.wait_leading()
    wait_handled(moodle, settings.state_schema, ids)
    assert restarted.terminate() == 0

    verdict = check(moodle, ids, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    statuses = {row["status"] for row in ledger(moodle, settings.state_schema).values()}
    assert "claimed" not in statuses, "every claimed row was resolved after the restart"
    if fifo or point == "after_commit":
        # A FIFO queue's dedup id (the outbox id) makes the resend of a claimed row a no-op.
        assert verdict.duplicates == 0, verdict.numbers()
        assert len(verdict.offloaded) == BATCH, verdict.numbers()
    else:
        # A standard queue cannot say whether it has them: every claimed row goes back to Moodle,
        # counted `uncertain`. After the dispatch that is one duplicate each; before it, none.
        assert statuses == {"uncertain"}, statuses
        assert len(verdict.left_for_moodle) + len(verdict.accepted_and_queued) == BATCH
        expected = 0 if point == "after_claim" else BATCH
        assert verdict.duplicates == expected, verdict.numbers()
    report(f"crash point {point} ({'fifo' if fifo else 'standard'} queue)", kills=1, **verdict.numbers())


def claimed_rows(moodle: MoodleDatabase, ids: list[int]) -> list[int]:
    connection = moodle.admin()
    try:
        with connection.cursor() as cursor:
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f"SELECT id FROM {moodle.prefix}email WHERE id IN ({marks}) AND sent IS NOT NULL", ids)
            return [int(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()


USERS = 2000
KILLS = 20


@pytest.fixture
def aws_received() -> Iterator[SqsReceipts]:
    """Every message moto's SQS takes in during the test, FIFO resends included."""
    receipts, undo = record_sqs_receipts()
    try:
        yield receipts
    finally:
        undo()


def _sessions_of(moodle: MoodleDatabase, user: str) -> int:
    connection = moodle.admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
            (count,) = cursor.fetchone()
    finally:
        connection.close()
    return int(count)


def claimed_in_ledger_after_a_kill(moodle: MoodleDatabase, schema: str) -> set[int]:
    """The rows a killed sidecar left between claim and final word, from the database: once the
    server has ended its writer sessions (a commit the kill interrupted is then in or out for good),
    the ledger rows still `claimed`."""
    wait_for(lambda: _sessions_of(moodle, moodle.writer.user) == 0, 30, "the killed sidecar's writer sessions gone")
    return {outbox_id for outbox_id, row in ledger(moodle, schema).items() if row["status"] == "claimed"}


@pytest.mark.slow
def test_twenty_random_sigkills_during_a_2000_user_upload(
    moodle: MoodleDatabase, aws_endpoint: str, aws_received: SqsReceipts
) -> None:
    rng = random.Random(20260401)
    queue_url = make_queue(True, "kills")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint, max_event_age=240, pair_window=30)

    created: list[int] = []
    upload_error: list[BaseException] = []

    def upload() -> None:
        # A CSV-style upload: bulk batches of 25 users, one transaction each, paced like a web request.
        try:
            admin = moodle.admin()
            for start in range(0, USERS, 25):
                ids = create_users_bulk(admin, make_users(25, start=100_000 + start))
                created.extend(outbox for _, outbox in ids)
                time.sleep(rng.uniform(0.0, 0.06))  # the uploader's own pace, not a wait on a condition
            admin.close()
        except BaseException as error:  # noqa: BLE001 - surfaced to the test below
            upload_error.append(error)

    uploader = threading.Thread(target=upload, name="csv-upload", daemon=True)
    uploader.start()
    # The evidence is the database's and AWS's, never the sidecar's own log: after each kill, the
    # ledger rows it left claimed (no final word yet), and the rows AWS had received when the next
    # process starts (a send the killed one had on the wire has landed by then).
    claimed_at_kill: list[set[int]] = []
    received_before_restart: list[set[int]] = []
    for n in range(KILLS):
        received_before_restart.append(set(aws_received.of(queue_url)))
        process = SidecarProcess(env, name=f"kill-{n}").start()
        process.wait_leading()
        time.sleep(rng.uniform(0.2, 3.0))  # the deliberate random moment of the kill
        process.kill()
        claimed_at_kill.append(claimed_in_ledger_after_a_kill(moodle, settings.state_schema))
    uploader.join(120)
    assert not upload_error, upload_error
    assert len(created) == USERS

    received_before_restart.append(set(aws_received.of(queue_url)))
    final = SidecarProcess(env, name="final").start()
    final.wait_leading()
    wait_handled(moodle, settings.state_schema, created, timeout=120)
    assert final.terminate() == 0

    verdict = check(moodle, created, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    received = aws_received.of(queue_url)
    assert set(received) == set(accepted_by_sqs(queue_url)), "the queue holds every row AWS took in"
    # A row can reach a user twice only if a kill caught it claimed after AWS had received it.
    windows = [claimed & received_before_restart[n + 1] for n, claimed in enumerate(claimed_at_kill)]
    in_window = set().union(*windows)
    assert verdict.duplicate_ids <= in_window, (verdict, sorted(verdict.duplicate_ids - in_window)[:20])
    report(
        "20 random SIGKILLs during a 2,000-user upload (FIFO queue)",
        kills=KILLS,
        kills_between_dispatch_and_commit=sum(1 for window in windows if window),
        rows_aws_received_before_a_kill_left_them_claimed=len(in_window),
        rows_resent_after_a_kill_deduplicated_by_fifo=sum(n - 1 for n in received.values()),
        rows_claimed_at_a_kill=len(set().union(*claimed_at_kill)),
        **verdict.numbers(),
    )


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (the reader runs in one, forked from a fork server)."""
    children: dict[int, set[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rpartition(")")[2].split()[:2]
        except OSError:
            continue
        if state != "Z":
            children.setdefault(int(parent), set()).add(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), set()) - found:
            found.add(child)
            todo.append(child)
    return found


def _live(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                live.add(pid)
        except OSError:
            continue
    return live


def _binlog_dumps(moodle: MoodleDatabase) -> int:
    """Binlog dump threads on the server for this test's reader account."""
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND LIKE 'Binlog Dump%%'",
            (moodle.reader.user,),
        )
        (count,) = cursor.fetchone()
    connection.close()
    return int(count)


def test_a_killed_sidecar_leaves_no_reader_process_behind(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    # The binlog is read in a child process. A SIGKILL gives the sidecar no chance to stop it: the
    # child must go by itself, or it would keep a dump open under our server id and hold the
    # sidecar's log pipe open. With a long heartbeat, finding the parent gone at its next message
    # would take far longer than the wait below: the child must go with the sidecar.
    queue_url = make_queue(False, "orphans")
    prepare(settings_for(moodle, queue_url))
    env = sidecar_env(moodle, queue_url, aws_endpoint, heartbeat=60, read_timeout=180)
    sidecar = SidecarProcess(env, name="orphans").start()
    sidecar.wait_leading()
    wait_for(lambda: _binlog_dumps(moodle) == 1, 30, "the reader's binlog dump")
    helpers = _descendants(sidecar.pid)
    assert helpers, "the reader runs in a process of its own"
    sidecar.kill()
    # (The server notices the closed dump connection only at its next heartbeat to it.)
    wait_for(lambda: not _live(helpers), 10, "the reader gone with it")
