"""Fail closed: when the source cannot be read without a silent skip, `run` stops with a clear
error naming the fix, a non-zero exit and the alert metric, and Moodle keeps sending. Each case
runs on a throwaway server of its own (purging binlogs and switching them off are server-wide)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdc_offload.demo.moodle import create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.runtime import EXIT_FAIL_CLOSED
from cdc_offload.sandbox import MariaDBSandbox
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.faults.invariant import accepted_by_sqs, check, report
from tests.faults.scenario import make_queue, prepare, settings_for, wait_handled
from tests.faults.sidecar import SidecarProcess, sidecar_env
from tests.support import wait_for


@pytest.fixture
def own_server() -> Iterator[MariaDBSandbox]:
    server = MariaDBSandbox(server_id=7)
    server.start()
    try:
        yield server
    finally:
        server.remove()


def _dump_threads(server: MariaDBSandbox) -> int:
    admin = server.connect()
    with admin.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
        (count,) = cursor.fetchone()
    admin.close()
    return int(count)


def _saved_file(moodle: MoodleDatabase, schema: str) -> str:
    admin = moodle.admin()
    with admin.cursor() as cursor:
        cursor.execute(f"SELECT binlog_file FROM `{schema}`.checkpoint")
        (name,) = cursor.fetchone()
    admin.close()
    return str(name)


def _offload_some(moodle: MoodleDatabase, env: dict[str, str], schema: str, start: int) -> list[int]:
    sidecar = SidecarProcess(env, name="before").start()
    sidecar.wait_leading()
    ids = [o for _, o in create_users_bulk(moodle.admin(), make_users(10, start=start))]
    wait_handled(moodle, schema, ids)
    assert sidecar.terminate() == 0
    return ids


def _fails_closed(env: dict[str, str], running: SidecarProcess | None = None) -> SidecarProcess:
    """`run` refuses: the fail_closed line, the alert metric while it lingers, then exit code 3."""
    refused = running or SidecarProcess({**env, "CDC_OFFLOAD_FAIL_CLOSED_LINGER": "3"}, name="refused").start()
    refused.wait_event("fail_closed", 60)
    assert refused.metrics()["cdc_offload_fail_closed"] == 1.0, "the alert metric is up before the exit"
    code = refused.wait_exit(30)
    assert code == EXIT_FAIL_CLOSED, (code, refused.events[-5:], refused.stderr_lines[-5:])
    assert not refused.named("batch_dispatching"), "nothing was sent from a guessed position"
    return refused


@pytest.mark.slow
def test_purged_position_exits_non_zero_naming_position_set(own_server: MariaDBSandbox, aws_endpoint: str) -> None:
    moodle = moodle_database(own_server, database="purged")
    queue_url = make_queue(False, "purge")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint)
    done = _offload_some(moodle, env, settings.state_schema, 500_000)

    # While it is stopped: new users (Moodle's to send now), and the binlog holding the checkpoint purged.
    waiting = [o for _, o in create_users_bulk(moodle.admin(), make_users(10, start=500_100))]
    checkpoint_file = _saved_file(moodle, settings.state_schema)
    admin = own_server.connect()
    with admin.cursor() as cursor:
        cursor.execute("FLUSH BINARY LOGS")
        cursor.execute("SHOW MASTER STATUS")
        current = cursor.fetchone()[0]

        def purged() -> bool:
            # A file a (just closed) dump thread still uses is skipped with a warning: purge again.
            cursor.execute(f"PURGE BINARY LOGS TO '{current}'")
            cursor.execute("SHOW BINARY LOGS")
            return checkpoint_file not in {row[0] for row in cursor.fetchall()}

        wait_for(purged, 30, "the checkpoint's binlog file purged")
    admin.close()

    refused = _fails_closed(env)
    (event,) = refused.named("fail_closed")
    assert "position set" in event["problem"] and "purged" in event["problem"]

    verdict = check(moodle, done + waiting, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert sorted(verdict.left_for_moodle) == sorted(waiting), "Moodle keeps the rows written meanwhile"
    report("PURGE BINARY LOGS past the checkpoint while stopped", exit_code=EXIT_FAIL_CLOSED, **verdict.numbers())


@pytest.mark.slow
def test_binlog_switched_off_exits_non_zero(own_server: MariaDBSandbox, aws_endpoint: str) -> None:
    moodle = moodle_database(own_server, database="nobinlog")
    queue_url = make_queue(False, "nobinlog")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint)
    _offload_some(moodle, env, settings.state_schema, 510_000)
    own_server.binlog_options = ()
    own_server.restart()
    refused = _fails_closed(env)
    (event,) = refused.named("fail_closed")
    assert "binlog is off" in event["problem"] and "--log-bin" in event["problem"]
    report("binlog switched off while stopped", exit_code=EXIT_FAIL_CLOSED)


@pytest.mark.slow
def test_compressed_events_mid_stream_fail_closed_not_skipped(own_server: MariaDBSandbox, aws_endpoint: str) -> None:
    moodle = moodle_database(own_server, database="compressed")
    queue_url = make_queue(False, "compressed")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    env = sidecar_env(moodle, queue_url, aws_endpoint)
    sidecar = SidecarProcess({**env, "CDC_OFFLOAD_FAIL_CLOSED_LINGER": "3"}, name="compressed").start()
    sidecar.wait_leading()
    admin = own_server.connect()
    with admin.cursor() as cursor:
        cursor.execute("SET GLOBAL log_bin_compress = ON")
    admin.close()
    ids = [o for _, o in create_users_bulk(moodle.admin(), make_users(10, start=520_000))]
    _fails_closed(env, running=sidecar)
    (event,) = sidecar.named("fail_closed")
    assert "compressed" in event["problem"] and "log_bin_compress" in event["problem"]
    verdict = check(moodle, ids, accepted_by_sqs(queue_url), settings.state_schema)
    verdict.assert_nothing_lost()
    assert sorted(verdict.left_for_moodle) == sorted(ids)
    # And at start-up, while it is still on:
    again = _fails_closed(env)
    assert "log_bin_compress is ON" in again.named("fail_closed")[0]["problem"]
    report("compressed binlog events mid-stream", exit_code=EXIT_FAIL_CLOSED, **verdict.numbers())


@pytest.mark.slow
def test_server_id_clash_fails_closed(own_server: MariaDBSandbox, aws_endpoint: str) -> None:
    from pymysqlreplication import BinLogStreamReader

    moodle = moodle_database(own_server, database="clash")
    queue_url = make_queue(False, "clash")
    settings = settings_for(moodle, queue_url)
    prepare(settings)
    # Our --server-id is the source server's own.
    env = sidecar_env(moodle, queue_url, aws_endpoint, server_id=own_server.server_id)
    first = _fails_closed(env)
    assert "--server-id" in first.named("fail_closed")[0]["problem"]

    # Another replica connects with our id while we stream: the server cuts us off (error 4052).
    env = sidecar_env(moodle, queue_url, aws_endpoint, server_id=4_242_077)
    sidecar = SidecarProcess({**env, "CDC_OFFLOAD_FAIL_CLOSED_LINGER": "3"}, name="clash").start()
    sidecar.wait_leading()
    wait_for(lambda: _dump_threads(own_server) >= 1, 30, "the sidecar's binlog dump on the server")
    intruder = BinLogStreamReader(
        connection_settings={"host": own_server.host, "port": own_server.port, "user": "root", "passwd": ""},
        server_id=4_242_077,
        blocking=True,
        enable_logging=False,
    )
    try:
        intruder.fetchone()
        _fails_closed(env, running=sidecar)
    finally:
        intruder.close()
    assert "4052" in sidecar.named("fail_closed")[0]["problem"]
    report("server_id clash (own id; another reader with ours)", exit_code=EXIT_FAIL_CLOSED)
