"""Pairing by the stream, on real servers: this host's clock off against the database's, rows
stamped a day ahead and a day behind in the middle of an upload, and a replica lagging 40 s
behind its primary during a 500-user upload. Every user is still paired: offloaded, or stale when
its age cannot be vouched for, never `no_user_insert`."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from cdc_offload.clock import OffsetClock
from cdc_offload.demo.moodle import NewUser, create_user_iomad, make_users
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.sandbox import MariaDBSandbox
from cdc_offload.settings import SinkSettings
from tests.faults.invariant import accepted_by_sqs, check
from tests.faults.scenario import Upload, make_queue, prepare, settings_for, wait_handled
from tests.support import Sidecar, ledger, wait_for

FAST = {"heartbeat": 0.5, "read_timeout": 3.0, "checkpoint_interval": 0.2}
DAY = 86_400


def _outcomes(moodle: MoodleDatabase, schema: str, outbox_ids: list[int]) -> Counter[tuple[str, str]]:
    recorded = ledger(moodle, schema)
    return Counter((recorded[i]["status"], recorded[i]["reason"]) for i in outbox_ids)


def _binlog_end(moodle: MoodleDatabase) -> tuple[str, int]:
    admin = moodle.admin()
    with admin.cursor() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
    admin.close()
    return str(row[0]), int(row[1])


def _checkpoint(moodle: MoodleDatabase, schema: str) -> tuple[str, int]:
    admin = moodle.admin()
    with admin.cursor() as cursor:
        cursor.execute(f"SELECT binlog_file, binlog_offset FROM `{schema}`.checkpoint")
        row = cursor.fetchone()
    admin.close()
    return str(row[0]), int(row[1])


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        # Inside the freshness limit (the measurement: 0 of 200 offloaded before).
        (35.0, ("offloaded", "none")),
        # Five minutes ahead: every row looks older than the limit to this host.
        pytest.param(300.0, ("stale", "too_old"), marks=pytest.mark.slow),
        # Five minutes behind: every row is stamped in this host's future, its age unknown.
        pytest.param(-300.0, ("stale", "clock_skew"), marks=pytest.mark.slow),
    ],
)
def test_this_hosts_clock_off_against_the_database(
    moodle: MoodleDatabase, sqs_queue: str, offset: float, expected: tuple[str, str]
) -> None:
    running = Sidecar(
        moodle.settings(SinkSettings(queue_url=sqs_queue, deadline=20.0), **FAST),
        clock=OffsetClock(offset),
    ).start()
    admin = moodle.admin()
    candidates: list[int] = []
    try:
        for burst in range(3):
            # Bursts with gaps in between, each burst resolved before the next starts.
            candidates += [create_user_iomad(admin, u)[1] for u in make_users(8, start=1000 + 100 * burst)]
            so_far = len(candidates)
            wait_for(lambda n=so_far: running.resolved() >= n, 30, "the burst resolved")  # type: ignore[misc]
    finally:
        admin.close()
        running.stop()
    outcomes = _outcomes(moodle, running.settings.state_schema, candidates)
    assert outcomes == Counter({expected: len(candidates)}), outcomes


def _insert_user_stamped(admin: Any, user: NewUser, stamp: int) -> int:
    """The user's INSERT alone in a transaction stamped `stamp` (SET TIMESTAMP), as a session
    with a wrong clock or a clock step on the primary writes it."""
    with admin.cursor() as cursor:
        cursor.execute("SET TIMESTAMP = %s", (stamp,))
        cursor.execute(
            "INSERT INTO mdl_user (auth, confirmed, mnethostid, username, password, firstname, lastname, email, "
            "timecreated, timemodified) VALUES ('manual', 1, 1, %s, '', 'Ada', 'L', %s, %s, %s)",
            (user.username, user.email, stamp, stamp),
        )
        userid = int(cursor.lastrowid)
        cursor.execute("SET TIMESTAMP = DEFAULT")
    return userid


def _insert_outbox(admin: Any, userid: int) -> int:
    with admin.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mdl_email (templatename, modifiedtime, subject, body, userid, due, companyid) "
            "VALUES ('user_create', UNIX_TIMESTAMP(), 's', '<p>password: Pw#stamped</p>', %s, UNIX_TIMESTAMP(), 1)",
            (userid,),
        )
        return int(cursor.lastrowid)


@pytest.mark.slow
def test_a_day_ahead_and_a_day_behind_in_the_middle_of_an_upload(moodle: MoodleDatabase, sqs_queue: str) -> None:
    bound = 256 * 1024
    settings = moodle.settings(
        SinkSettings(queue_url=sqs_queue, deadline=20.0), pair_window=2.0, pair_window_bytes=bound, **FAST
    )
    running = Sidecar(settings).start()
    admin = moodle.admin()
    try:
        before = [create_user_iomad(admin, u)[1] for u in make_users(10, start=2000)]
        now = int(time.time())
        ahead = _insert_user_stamped(admin, NewUser("ahead", "ahead@example.org", "x"), now + DAY)
        behind = _insert_user_stamped(admin, NewUser("behind", "behind@example.org", "x"), now - DAY)
        outliers = [_insert_outbox(admin, ahead), _insert_outbox(admin, behind)]
        # A user whose template is disabled (no outbox row), stamped a day ahead: before, it held
        # the checkpoint until the wall clock caught up with it, a day later.
        _insert_user_stamped(admin, NewUser("lone", "lone@example.org", "x"), now + DAY)
        past_lone = _binlog_end(moodle)
        upload = Upload(moodle, 60, start=3000, pace=0.05).start()
        after = upload.join()
        wait_for(
            lambda: _checkpoint(moodle, settings.state_schema) >= past_lone, 30, "the checkpoint to pass the lone user"
        )
        wait_for(lambda: running.resolved() >= len(before) + len(outliers) + len(after), 30, "every row resolved")
        oldest = running.runtime.metrics.registry.get_sample_value("cdc_offload_oldest_unresolved_age_seconds")
    finally:
        admin.close()
        running.stop()
    outcomes = _outcomes(moodle, settings.state_schema, before + after)
    assert outcomes == Counter({("offloaded", "none"): len(before) + len(after)}), outcomes
    # The outliers' own rows were written at the right time: paired and sent too.
    assert _outcomes(moodle, settings.state_schema, outliers) == Counter({("offloaded", "none"): 2})
    assert oldest is not None and oldest < 10


# -- a replica lagging behind its primary -------------------------------------------------------


def _run(server: MariaDBSandbox, *statements: str) -> None:
    connection = server.connect()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def _one(server: MariaDBSandbox, sql: str) -> Any:
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    connection.close()
    return row[0] if row else None


@pytest.fixture
def lagging_pair() -> Iterator[tuple[MariaDBSandbox, MariaDBSandbox]]:
    primary = MariaDBSandbox(server_id=1, extra_options=["--log-slave-updates"])
    replica = MariaDBSandbox(server_id=2, extra_options=["--log-slave-updates"])
    try:
        primary.start()
        replica.start()
        _run(primary, "CREATE USER repl@'%' IDENTIFIED BY 'repl'", "GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
        _run(
            replica,
            f"CHANGE MASTER TO master_host='127.0.0.1', master_port={primary.port}, master_user='repl', "
            "master_password='repl', master_use_gtid=slave_pos",
            "START SLAVE",
        )
        yield primary, replica
    finally:
        replica.remove()
        primary.remove()


@pytest.mark.slow
def test_a_replica_lagging_40_seconds_during_a_500_user_upload(
    lagging_pair: tuple[MariaDBSandbox, MariaDBSandbox], aws_endpoint: str
) -> None:
    primary, replica = lagging_pair
    on_primary = moodle_database(primary, database="lagging")
    wait_for(
        lambda: _one(primary, "SELECT @@gtid_binlog_pos") == _one(replica, "SELECT @@gtid_slave_pos"),
        30,
        "the replica to have the Moodle tables",
    )
    # From here on the replica applies every transaction 40 s after the primary committed it.
    _run(replica, "STOP SLAVE", "CHANGE MASTER TO master_delay = 40", "START SLAVE")
    on_replica_reader = dataclasses.replace(on_primary.reader, port=replica.port)
    queue_url = make_queue(False, "lagging")
    settings = dataclasses.replace(settings_for(on_primary, queue_url), source=on_replica_reader, **FAST)
    prepare(settings)
    running = Sidecar(settings).start()
    try:
        upload = Upload(on_primary, 500, start=700_000).start()
        candidates = upload.join(timeout=300)
        wait_handled(on_primary, settings.state_schema, candidates, timeout=180)
    finally:
        running.stop()
    outcomes = _outcomes(on_primary, settings.state_schema, candidates)
    assert set(outcomes) <= {("offloaded", "none"), ("stale", "too_old")}, outcomes
    assert outcomes[("offloaded", "none")] >= len(candidates) // 2, outcomes
    verdict = check(on_primary, candidates, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict
