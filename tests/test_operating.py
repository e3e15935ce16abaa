"""The operator surface on real servers: /metrics, /healthz, /ledger, check, position, replay."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cdc_offload.cli import main
from cdc_offload.demo.moodle import NewUser, create_user_iomad, make_users
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.sandbox import MariaDBSandbox, free_port
from cdc_offload.settings import SinkSettings
from tests.support import Sidecar, ledger, outbox_rows, sqs_messages, wait_for

FAST = {"heartbeat": 0.5, "read_timeout": 3.0, "checkpoint_interval": 0.2}


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        family, _, label_text = metric.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if family == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def cli_env(moodle: MoodleDatabase, queue_url: str, schema: str) -> dict[str, str]:
    return {
        "CDC_OFFLOAD_SOURCE_DSN": moodle.server.url(moodle.reader.user, database=moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD": moodle.reader.password,
        "CDC_OFFLOAD_WRITER_DSN": moodle.server.url(moodle.writer.user, database=moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": moodle.writer.password,
        "CDC_OFFLOAD_STATE_SCHEMA": schema,
        "CDC_OFFLOAD_QUEUE_URL": queue_url,
    }


@pytest.mark.slow
def test_metrics_health_and_ledger_endpoints_during_a_run(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    port = free_port()
    running = Sidecar(moodle.settings(sqs_sink, metrics_port=port, metrics_host="127.0.0.1", **FAST)).start()
    admin = moodle.admin()
    created = [create_user_iomad(admin, user) for user in make_users(30, start=60_000)]
    wait_for(lambda: running.resolved() >= 30, 30, "30 rows resolved")
    wait_for(
        lambda: (
            (sample(get(port, "/metrics")[1].decode(), "cdc_offload_binlog_events_total", type="write_rows") or 0) >= 60
        ),
        10,
        "the event counts of the 30 users",
    )

    status, body = get(port, "/metrics")
    text = body.decode()
    assert status == 200
    assert sample(text, "cdc_offload_jobs_total", status="offloaded", reason="none") == 30
    assert sample(text, "cdc_offload_jobs_total", status="skipped", reason="bad_address") == 0, "created at start"
    assert sample(text, "cdc_offload_rows_seen_total", table="user") == 30
    assert sample(text, "cdc_offload_rows_seen_total", table="outbox") == 30
    assert (sample(text, "cdc_offload_binlog_events_total", type="write_rows") or 0) >= 60
    assert (sample(text, "cdc_offload_binlog_events_total", type="xid") or 0) >= 30 * 12
    assert (sample(text, "cdc_offload_dispatch_seconds_count", sink="sqs") or 0) >= 1
    assert sample(text, "cdc_offload_aws_errors_total", code="ThrottlingException") == 0
    assert sample(text, "cdc_offload_active") == 1
    assert sample(text, "cdc_offload_build_info") == 1
    lag = sample(text, "cdc_offload_replication_lag_seconds")
    assert lag is not None and 0 <= lag < 30
    assert sample(text, "cdc_offload_oldest_unresolved_age_seconds") is not None
    assert (sample(text, "cdc_offload_checkpoint_binlog_file_index") or 0) >= 1
    assert (sample(text, "cdc_offload_checkpoint_last_commit_timestamp_seconds") or 0) > 1.7e9

    assert get(port, "/healthz")[0] == 200 and get(port, "/readyz")[0] == 200
    user_id, outbox_id = created[0]
    status, body = get(port, f"/ledger/users/{user_id}")
    answer = orjson.loads(body)
    assert status == 200 and answer["rows"][0]["outbox_id"] == outbox_id and answer["rows"][0]["status"] == "offloaded"
    assert get(port, "/ledger/users/abc")[0] == 404 and get(port, "/")[0] == 404 and get(port, "/debug")[0] == 404
    running.stop()


@pytest.mark.slow
def test_healthz_turns_503_when_the_replica_link_is_cut_and_200_when_it_is_back(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    port = free_port()
    running = Sidecar(moodle.settings(sqs_sink, metrics_port=port, metrics_host="127.0.0.1", **FAST)).start()
    wait_for(lambda: get(port, "/healthz")[0] == 200, 10, "healthy")
    admin = moodle.server.connect()
    reader = moodle.reader.user
    with admin.cursor() as cursor:
        # A real cut: the account can no longer log in, and its live binlog dump is killed.
        cursor.execute(f"ALTER USER '{reader}'@'%' ACCOUNT LOCK")
        cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (reader,))
        for (connection_id,) in cursor.fetchall():
            cursor.execute(f"KILL CONNECTION {int(connection_id)}")
    wait_for(lambda: get(port, "/healthz")[0] == 503, 15, "/healthz to report the cut")
    assert get(port, "/readyz")[0] == 503
    with admin.cursor() as cursor:
        cursor.execute(f"ALTER USER '{reader}'@'%' ACCOUNT UNLOCK")
    wait_for(lambda: get(port, "/healthz")[0] == 200, 30, "/healthz to recover after reconnecting")
    _, outbox_id = create_user_iomad(moodle.admin(), NewUser("after_cut", "after@example.org", "Pw#9"))
    wait_for(lambda: outbox_id in ledger(moodle, running.settings.state_schema), 30, "work resumed after the cut")
    metrics = get(port, "/metrics")[1].decode()
    assert (sample(metrics, "cdc_offload_reader_restarts_total") or 0) >= 1
    running.stop()


@pytest.mark.slow
def test_replay_dry_run_of_a_handled_stretch_changes_nothing(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    settings = moodle.settings(sqs_sink, **FAST)
    running = Sidecar(settings).start()
    start = running.runtime.pipeline  # the checkpoint at start is where the stretch begins
    from cdc_offload.operations import show_position

    begin = show_position(settings)
    assert begin is not None and start is not None
    admin = moodle.admin()
    for user in make_users(10, start=70_000):
        create_user_iomad(admin, user)
    wait_for(lambda: running.resolved() >= 10, 30, "10 rows resolved")
    running.stop()
    queue_before = sqs_messages(sqs_sink.queue_url or "")
    ledger_before, outbox_before = ledger(moodle, settings.state_schema), outbox_rows(moodle)

    env = cli_env(moodle, sqs_sink.queue_url or "", settings.state_schema)
    result = CliRunner().invoke(main, ["replay", "--from", str(begin.position), "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "already done (in the ledger): 10" in result.output
    assert "would be offloaded" not in result.output
    assert ledger(moodle, settings.state_schema) == ledger_before and outbox_rows(moodle) == outbox_before
    assert len(queue_before) == 10 and sqs_messages(sqs_sink.queue_url or "") == []


@pytest.mark.slow
def test_replay_of_a_stretch_missed_while_stopped_reports_stale_unless_ignore_age(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    settings = moodle.settings(
        SinkSettings(queue_url=sqs_sink.queue_url, deadline=0.9), pair_window=0.5, max_event_age=1.0, **FAST
    )
    running = Sidecar(settings).start()
    running.stop()
    from cdc_offload.operations import show_position

    begin = show_position(settings)
    assert begin is not None
    admin = moodle.admin()
    outbox = [create_user_iomad(admin, user)[1] for user in make_users(5, start=80_000)]
    wait_for(lambda: admin.ping() is None and _age_passed(admin, 2), 10, "the rows to age past --max-event-age")
    env = {
        **cli_env(moodle, sqs_sink.queue_url or "", settings.state_schema),
        "CDC_OFFLOAD_MAX_EVENT_AGE": "1",
        "CDC_OFFLOAD_PAIR_WINDOW": "0.5",
        "CDC_OFFLOAD_AWS_DEADLINE": "0.9",
    }
    dry = CliRunner().invoke(main, ["replay", "--from", str(begin.position), "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "5  would be stale (too_old)" in dry.output
    forced = CliRunner().invoke(main, ["replay", "--from", str(begin.position), "--ignore-age"], env=env)
    assert forced.exit_code == 0, forced.output
    assert "5  were offloaded (none)" in forced.output
    assert not set(outbox) & set(outbox_rows(moodle))
    assert len(sqs_messages(sqs_sink.queue_url or "")) == 5


def _age_passed(admin: Any, seconds: int) -> bool:
    with admin.cursor() as cursor:
        cursor.execute(f"SELECT MAX(timecreated) < UNIX_TIMESTAMP() - {seconds} FROM mdl_user")
        return bool(cursor.fetchone()[0])


def test_position_set_is_refused_while_another_instance_is_active(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    settings = moodle.settings(sqs_sink, **FAST)
    running = Sidecar(settings).start()
    env = cli_env(moodle, sqs_sink.queue_url or "", settings.state_schema)
    refused = CliRunner().invoke(main, ["position", "set", "--now"], env=env)
    assert refused.exit_code == 1 and "another cdc-offload instance is active" in refused.output
    running.stop()
    moved = CliRunner().invoke(main, ["position", "set", "binlog.000001:4"], env=env)
    assert moved.exit_code == 0, moved.output
    shown = CliRunner().invoke(main, ["position", "show"], env=env)
    assert shown.output.strip() == "binlog.000001:4"


@pytest.mark.slow
def test_check_names_statement_binlog_and_run_refuses(sqs_queue: str) -> None:
    server = MariaDBSandbox(
        binlog_options=("--log-bin=binlog", "--binlog-format=STATEMENT", "--binlog-row-metadata=FULL")
    )
    server.start()
    try:
        moodle = moodle_database(server)
        CliRunner().invoke(
            main, ["init"], env={k: v for k, v in cli_env(moodle, sqs_queue, "cdc_moodle").items() if "SOURCE" not in k}
        )
        env = cli_env(moodle, sqs_queue, "cdc_moodle")
        result = CliRunner().invoke(main, ["check"], env=env)
        assert result.exit_code == 1
        assert "FAIL  binlog_format ROW: binlog_format is STATEMENT, not ROW" in result.output
        assert "fix: SET GLOBAL binlog_format = 'ROW'" in result.output
        assert "ok    binlog on" in result.output
        port = free_port()
        process = subprocess.Popen(
            ["cdc-offload", "run", "--metrics-port", str(port), "--fail-closed-linger", "20"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # While it lingers, the refusal is visible to Prometheus, and it is not ready.
            wait_for(lambda: _fail_closed_reported(port), 20, "cdc_offload_fail_closed 1 on /metrics")
            assert get(port, "/readyz")[0] == 503
        finally:
            process.terminate()
            out, _ = process.communicate(timeout=30)
        assert process.returncode == 1
        lines = [orjson.loads(line) for line in out.splitlines()]
        failed = [line for line in lines if line["event"] == "preflight_failed"]
        assert [line["check"] for line in failed] == ["binlog_format ROW"]
        assert "binlog_format = 'ROW'" in failed[0]["fix"]
        assert any(line["event"] == "refusing_to_start" for line in lines)
    finally:
        server.remove()


def test_init_is_idempotent_and_ledger_answers_per_user(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    settings = moodle.settings(sqs_sink, **FAST)
    env = cli_env(moodle, sqs_sink.queue_url or "", settings.state_schema)
    for _ in range(2):
        result = CliRunner().invoke(main, ["init"], env=env)
        assert result.exit_code == 0, result.output
        assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.*" in result.output
        assert f"UPDATE (`sent`) ON `{moodle.database}`.`mdl_email`" in result.output
    running = Sidecar(settings).start()
    user_id, outbox_id = create_user_iomad(moodle.admin(), NewUser("asked", "asked@example.org", "Pw#5"))
    wait_for(lambda: running.resolved() >= 1, 30, "the row resolved")
    running.stop()
    answer = CliRunner().invoke(main, ["ledger", "--user", str(user_id), "--json"], env=env)
    assert answer.exit_code == 0, answer.output
    (row,) = orjson.loads(answer.output)
    assert row["outbox_id"] == outbox_id and row["status"] == "offloaded" and row["sink"] == "sqs"
    assert row["message_id"] and row["handled_at"].endswith("Z")
    nothing = CliRunner().invoke(main, ["ledger", "--user", "999999", "--json"], env=env)
    assert orjson.loads(nothing.output) == []


def _fail_closed_reported(port: int) -> bool:
    try:
        return sample(get(port, "/metrics")[1].decode(), "cdc_offload_fail_closed") == 1
    except OSError:
        return False


def test_a_gtid_only_position_is_refused_unless_resuming_by_gtid(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    import threading

    import pytest

    from cdc_offload.errors import FailClosed
    from cdc_offload.runtime import build
    from tests.support import init_state

    settings = moodle.settings(sqs_sink, **FAST)
    init_state(settings)
    env = cli_env(moodle, sqs_sink.queue_url or "", settings.state_schema)
    assert CliRunner().invoke(main, ["position", "set", "--gtid", "0-1-1"], env=env).exit_code == 0
    runtime = build(settings)
    try:
        # Read by file/offset, an empty file name would start at the server's oldest binlog.
        with pytest.raises(FailClosed, match="run with --resume gtid"):
            runtime.pipeline.run(threading.Event())
    finally:
        runtime.dispatcher.close()
    assert runtime.metrics.registry.get_sample_value("cdc_offload_fail_closed") == 1
