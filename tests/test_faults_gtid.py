"""GTID: a primary and a replica (real MariaDB servers, GTID replication). The sidecar follows the
replica; the primary dies and the replica is promoted; the sidecar resumes by GTID on it. Then the
old primary comes back as a replica of the new one: its file/offset mean nothing for our checkpoint
(refused), its GTIDs do (resumed). Nothing lost throughout."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from cdc_offload.demo.moodle import create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.model import Commit
from cdc_offload.runtime import EXIT_FAIL_CLOSED
from cdc_offload.sandbox import MariaDBSandbox
from cdc_offload.source import BinlogSource
from cdc_offload.source.server_facts import current_end
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check, report
from tests.faults.scenario import Upload, make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import Link, SidecarProcess, sidecar_env
from tests.support import wait_for

GTID = {"resume": "gtid"}


def _one(server: MariaDBSandbox, sql: str) -> Any:
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    connection.close()
    return row[0] if row else None


def _run(server: MariaDBSandbox, *statements: str) -> None:
    connection = server.connect()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def _replicate(replica: MariaDBSandbox, primary: MariaDBSandbox, use_gtid: str) -> None:
    _run(
        replica,
        f"CHANGE MASTER TO master_host='127.0.0.1', master_port={primary.port}, master_user='repl', "
        f"master_password='repl', master_use_gtid={use_gtid}",
        "START SLAVE",
    )


def _caught_up(replica: MariaDBSandbox, primary: MariaDBSandbox) -> bool:
    return bool(_one(primary, "SELECT @@gtid_binlog_pos") == _one(replica, "SELECT @@gtid_slave_pos"))


def _on(moodle: MoodleDatabase, server: MariaDBSandbox) -> MoodleDatabase:
    """The same database and accounts (replicated), reached on another server."""
    return dataclasses.replace(
        moodle,
        server=server,
        reader=dataclasses.replace(moodle.reader, port=server.port),
        writer=dataclasses.replace(moodle.writer, port=server.port),
    )


@pytest.fixture
def pair() -> Iterator[tuple[MariaDBSandbox, MariaDBSandbox]]:
    primary = MariaDBSandbox(server_id=1, extra_options=["--log-slave-updates"])
    replica = MariaDBSandbox(server_id=2, extra_options=["--log-slave-updates"])
    try:
        primary.start()
        replica.start()
        _run(primary, "CREATE USER repl@'%' IDENTIFIED BY 'repl'", "GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
        _replicate(replica, primary, "slave_pos")
        yield primary, replica
    finally:
        replica.remove()
        primary.remove()


@pytest.mark.slow
def test_failover_to_the_promoted_replica_resumes_by_gtid(
    pair: tuple[MariaDBSandbox, MariaDBSandbox], aws_endpoint: str
) -> None:
    primary, replica = pair
    on_primary = moodle_database(primary, database="failover")
    wait_for(lambda: _caught_up(replica, primary), 30, "the replica caught up")
    on_replica = _on(on_primary, replica)
    queue_url = make_queue(True, "gtid")
    # Reading the replica, writing the primary.
    settings = dataclasses.replace(settings_for(on_primary, queue_url), source=on_replica.reader, resume="gtid")
    prepare(settings)
    env = sidecar_env(on_primary, queue_url, aws_endpoint, source=Link(on_replica.reader))
    candidates: list[int] = []

    first = SidecarProcess(env, name="follows-replica", overrides=GTID).start()
    first.wait_leading()
    upload = Upload(on_primary, 120, start=600_000, pace=0.002).start()
    wait_for(lambda: upload.created() >= 60, 60, "60 users on the primary")
    first.kill()  # the sidecar dies too, somewhere in the middle
    candidates += upload.join()
    wait_for(lambda: _caught_up(replica, primary), 30, "the replica caught up")
    behind = [i for i in candidates if i not in _ledger_ids(on_primary, settings.state_schema)]

    # The primary dies; the replica is promoted.
    assert primary._process is not None
    primary._process.kill()
    primary._process.wait()
    _run(replica, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = OFF")

    # The sidecar now reads and writes the new primary, from the checkpoint that replicated to it.
    env_promoted = sidecar_env(on_replica, queue_url, aws_endpoint)
    second = SidecarProcess(env_promoted, name="on-promoted", overrides=GTID).start()
    leading = second.wait_leading()
    assert leading["gtid"].startswith("0-1-"), "it resumes by the old primary's GTID"
    more = [o for _, o in create_users_bulk(on_replica.admin(), make_users(40, start=601_000))]
    candidates += more
    wait_handled(on_replica, settings.state_schema, candidates)
    assert second.terminate() == 0

    # The old primary comes back as a replica of the new one, and the sidecar is pointed at it.
    primary.start()
    _replicate(primary, replica, "current_pos")
    wait_for(lambda: _caught_up(primary, replica), 30, "the old primary caught up")
    via_old = sidecar_env(on_replica, queue_url, aws_endpoint, source=Link(on_primary.reader))
    refused = SidecarProcess(via_old, name="by-position", overrides={"resume": "position"}).start()
    assert refused.wait_exit(60) == EXIT_FAIL_CLOSED
    problem = refused.named("fail_closed")[0]["problem"]
    assert "server_id 2" in problem and "--resume gtid" in problem and "position set" in problem

    third = SidecarProcess(via_old, name="by-gtid", overrides=GTID).start()
    third.wait_leading()
    last = [o for _, o in create_users_bulk(on_replica.admin(), make_users(30, start=602_000))]
    candidates += last
    wait_handled(on_replica, settings.state_schema, candidates)
    assert third.terminate() == 0

    verdict = check(on_replica, candidates, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert verdict.duplicates == 0, verdict
    assert len(verdict.offloaded) == len(candidates), verdict
    report(
        "GTID failover: replica promoted, resumed by GTID; old primary back as replica",
        kills=1,
        rows_behind_at_failover=len(behind),
        position_resume_on_another_server="refused",
        **verdict.numbers(),
    )


def _ledger_ids(moodle: MoodleDatabase, schema: str) -> set[int]:
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT outbox_id FROM `{schema}`.ledger")
        found = {int(r[0]) for r in cursor.fetchall()}
    connection.close()
    return found


def test_several_megabytes_in_gtid_mode_without_a_reconnect(moodle: MoodleDatabase) -> None:
    """The library's MariaDB GTID dump request is one byte short; MariaDB resets such a dump after a
    few hundred KB. With the length computed from the payload, 6 MB stream in one connection (the
    reader refuses a second connection, so a reset would fail this test)."""
    from cdc_offload.settings import SinkSettings

    settings = moodle.settings(SinkSettings(queue_url="unused"), resume="gtid", heartbeat=0.5, read_timeout=5)
    start = current_end(settings.source)
    assert start.gtid, "the sandbox has GTIDs"
    admin = moodle.admin()
    with admin.cursor() as cursor:
        for n in range(120):
            cursor.execute(
                f"INSERT INTO {moodle.prefix}email (templatename, modifiedtime, subject, body, userid, due) "
                "VALUES ('user_create', 0, 's', %s, %s, 0)",
                ("x" * 50_000, n),
            )
    admin.close()
    source = BinlogSource(settings, start, blocking=False)
    commits = rows = 0
    for item in source:
        commits += isinstance(item, Commit)
        rows += type(item).__name__ == "ChangeEvent"
    source.close()
    assert rows == 120 and commits >= 120
