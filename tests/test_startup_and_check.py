"""Starting and checking as a new operator would: the shipped deploy files' environment (and no
other) against the real process, `check` without an AWS setting, MySQL errors said the way the
server said them with the matching fix, SES pacing when GetAccount is refused, `replay` and the
breaker's cooldown, and a deadline AWS may have answered after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import orjson
import pytest
import yaml
from click.testing import CliRunner

from cdc_offload import logs
from cdc_offload.cli import main
from cdc_offload.demo.moodle import create_users_bulk, make_users
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.errors import StartupError
from cdc_offload.metrics import Metrics
from cdc_offload.model import Position
from cdc_offload.operations import plan_replay, replay
from cdc_offload.sandbox import free_port
from cdc_offload.session import RunMode
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks.region import queue_region, region_name
from cdc_offload.sinks.ses import FALLBACK_SEND_RATE, SesSink
from tests.faults.invariant import accepted_by_sqs
from tests.faults.proxy import FaultProxy
from tests.support import Sidecar, init_state, ledger, outbox_rows, wait_for

REPO = Path(__file__).resolve().parents[1]


def _env(moodle: MoodleDatabase, **extra: str) -> dict[str, str]:
    return {
        "CDC_OFFLOAD_SOURCE_DSN": moodle.server.url(moodle.reader.user, database=moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD": moodle.reader.password,
        "CDC_OFFLOAD_WRITER_DSN": moodle.server.url(moodle.writer.user, database=moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": moodle.writer.password,
        "CDC_OFFLOAD_STATE_SCHEMA": f"cdc_{moodle.database}",
        **extra,
    }


# -- the region, and the deploy files as shipped ----------------------------------------------------


def test_the_region_comes_from_the_queue_url_then_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo") == "eu-west-1"
    assert queue_region("https://ap-southeast-2.queue.amazonaws.com/123456789012/q") == "ap-southeast-2"
    assert queue_region("http://moto:5000/123456789012/q") is None
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert region_name("https://sqs.us-west-2.amazonaws.com/1/q") == "us-west-2", "the queue's own region wins"
    assert region_name("http://localstack:4566/000000000000/q") == "eu-central-1"
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(StartupError) as refused:
        region_name(None)
    message = str(refused.value)
    assert "AWS_REGION" in message and "\n" not in message and message.count(". ") == 0


def _compose_env() -> dict[str, str]:
    document = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    service = next(s for n, s in document["services"].items() if n.startswith("cdc-offload") and "init" not in n)
    return {str(k): str(v) for k, v in service["environment"].items()}


def _configmap_env() -> dict[str, str]:
    document = yaml.safe_load((REPO / "deploy/kubernetes/configmap.yaml").read_text())
    return {str(k): str(v) for k, v in document["data"].items()}


@pytest.mark.parametrize("deploy_file", ["compose", "kubernetes"])
@pytest.mark.slow
def test_the_process_started_with_a_deploy_files_environment_says_one_sentence(
    deploy_file: str, tmp_path: Path
) -> None:
    env = _compose_env() if deploy_file == "compose" else _configmap_env()
    assert "AWS_REGION" in env and "AWS_DEFAULT_REGION" not in env, "the files set AWS_REGION only"
    # The Secret's files, mounted where the deploy file says (here: a directory of the test's).
    for name in ("CDC_OFFLOAD_SOURCE_PASSWORD_FILE", "CDC_OFFLOAD_WRITER_PASSWORD_FILE"):
        secret = tmp_path / Path(env[name]).name
        secret.write_text("not-the-real-password\n")
        env[name] = str(secret)
    # Nothing else from this machine: only where this checkout's code is.
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", str(REPO))
    env["CDC_OFFLOAD_METRICS_PORT"] = str(free_port())  # several runs share this machine
    command = shutil.which("cdc-offload") or str(Path(sys.executable).with_name("cdc-offload"))
    process = subprocess.Popen(
        [command, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[dict[str, Any]] = []
    reading = threading.Thread(
        target=lambda: lines.extend(orjson.loads(line) for line in process.stdout or [] if line.strip()), daemon=True
    )
    reading.start()
    try:
        # The databases named in the file do not exist here: the checks fail, and it refuses to start.
        wait_for(
            lambda: process.poll() is not None or any(line["event"] == "refusing_to_start" for line in lines),
            90,
            "the refusal",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        reading.join(10)
    assert "Traceback" not in stderr and "NoRegionError" not in stderr, stderr[-2000:]
    assert process.returncode == 1
    assert "Traceback" not in stderr and "NoRegionError" not in stderr, stderr[-2000:]
    failed = [line for line in lines if line["event"] == "preflight_failed"]
    assert failed, lines
    for line in failed:
        assert line["problem"] and line["fix"] and "\n" not in line["problem"], line
    assert not [line for line in lines if line["event"] == "cannot_start"], "the AWS set-up itself is fine"


# -- check -------------------------------------------------------------------------------------------


def test_check_without_a_queue_url_runs_every_database_check(moodle: MoodleDatabase) -> None:
    init_state(moodle.settings(SinkSettings(queue_url="unused")))
    result = CliRunner().invoke(main, ["check"], env=_env(moodle))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL  AWS setting: no SQS queue URL is set (required with --sink sqs)"
    ]
    assert "--queue-url (or CDC_OFFLOAD_QUEUE_URL)" in result.output
    assert sum(line.startswith("ok") for line in lines) >= 8, result.output


@pytest.mark.parametrize(
    ("what", "said", "fix"),
    [
        ("unknown database", "the server has no database `nosuchdb` (MySQL error 1049)", "name Moodle's database"),
        ("wrong password", "wrong password, or no such account for this client's host (MySQL error 1045)", "password"),
        ("nothing listening", "connection refused) (MySQL error 2003)", "that the server is running"),
    ],
)
def test_check_says_what_the_server_said_and_the_matching_fix(
    moodle: MoodleDatabase, db_server: Any, what: str, said: str, fix: str
) -> None:
    env = _env(moodle, CDC_OFFLOAD_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/1/q")
    if what == "unknown database":
        env["CDC_OFFLOAD_WRITER_DSN"] = db_server.url("root", database="nosuchdb")
        env["CDC_OFFLOAD_WRITER_PASSWORD"] = getattr(db_server, "password", "") or ""
    elif what == "wrong password":
        env["CDC_OFFLOAD_WRITER_PASSWORD"] = "not-" + moodle.writer.password
    else:
        env["CDC_OFFLOAD_WRITER_DSN"] = f"mysql://{moodle.writer.user}@127.0.0.1:{free_port()}/{moodle.database}"
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 1
    (failure,) = [line for line in result.output.splitlines() if line.startswith("FAIL  writer connection")]
    assert failure.endswith(said), failure
    assert fix in result.output.split(failure, 1)[1].splitlines()[1]
    assert "the network" not in failure


# -- SES pacing ----------------------------------------------------------------------------------------


def test_ses_pacing_when_get_account_is_refused(ses_sender: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = boto3.client("sesv2")

    def refuse(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform ses:GetAccount"}},
            "GetAccount",
        )

    client.meta.events.register("before-call.sesv2.GetAccount", refuse)
    logs.configure("INFO")
    sink = SesSink(SinkSettings(kind="ses", ses_from=ses_sender, deadline=5.0), client)
    try:
        assert sink.rate == FALLBACK_SEND_RATE and sink.send_rate_unknown
        said = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if "ses_send_rate" in line]
        assert len(said) == 1 and said[0]["code"] == "AccessDeniedException" and "ses:GetAccount" in said[0]["fix"]
    finally:
        sink.close()


# -- replay and the breaker's cooldown -----------------------------------------------------------------


@pytest.mark.slow
def test_replay_honours_the_breaker_cooldown(
    moodle: MoodleDatabase, aws_endpoint: str, sqs_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = moodle.settings(
        SinkSettings(queue_url=sqs_queue, deadline=2.0, breaker_failures=1, breaker_cooldown=0.0), max_batch=1
    )
    init_state(settings)
    span, _ = plan_replay(settings, Position("binlog.000001", 4), None)
    admin = moodle.admin()
    create_users_bulk(admin, make_users(4, start=520_000), moodle.prefix)
    admin.close()
    span, _ = plan_replay(settings, span.end, None)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    metrics = Metrics()
    with FaultProxy("127.0.0.1", moto_port, "aws") as aws:
        aws.down()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{aws.host}:{aws.port}")
        tally = replay(settings, span, RunMode(ignore_age=True, stop_at_end=True), dry_run=False, metrics=metrics)
    assert tally.outcomes[("fallback", "aws_unavailable")] == 4, tally.outcomes
    held_back = metrics.registry.get_sample_value("cdc_offload_aws_errors_total", {"code": "BreakerOpen"})
    assert held_back == 0, "a cooldown of 0 s lets every round try AWS again"


# -- a deadline AWS may answer after ------------------------------------------------------------------


@pytest.mark.slow
def test_a_request_aws_takes_after_our_deadline_is_counted_uncertain(
    moodle: MoodleDatabase, aws_endpoint: str, sqs_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", moto_port, "aws") as aws:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{aws.host}:{aws.port}")
        settings = moodle.settings(
            SinkSettings(queue_url=sqs_queue, deadline=1.0), heartbeat=0.5, read_timeout=3.0, pair_window=2.0
        )
        running = Sidecar(settings).start()
        aws.slow(1.5)  # the request reaches AWS after the deadline, and AWS takes it
        admin = moodle.admin()
        ((_, late),) = create_users_bulk(admin, make_users(1, start=530_000), moodle.prefix)
        admin.close()
        wait_for(lambda: running.resolved() >= 1, 30, "the row resolved")
        wait_for(lambda: accepted_by_sqs(sqs_queue)[late] == 1, 30, "AWS to have taken it after all")
        running.stop()
    recorded = ledger(moodle, settings.state_schema)[late]
    assert (recorded["status"], recorded["reason"]) == ("uncertain", "no_answer")
    assert outbox_rows(moodle)[late] is None, "left to Moodle: the user may get it twice, and it is counted"
