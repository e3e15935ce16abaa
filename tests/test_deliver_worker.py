"""`deliver` against moto's SQS and SES over real HTTP (and a stand-in SES for throttling and the
daily quota): one SendEmail per recipient, deleted only once all are accepted, poison to the
dead-letter queue, throttling slows it and loses nothing, a crash costs at most one counted
duplicate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from cdc_offload.deliver.consumer import Consumer, run_consumers
from cdc_offload.deliver.metrics import DeliverMetrics
from cdc_offload.deliver.queue import Queue, Received
from cdc_offload.deliver.runtime import run_deliver
from cdc_offload.deliver.settings import ConsumerSettings, DeliverSettings
from cdc_offload.deliver.worker import DeliveryWorker, client_config
from cdc_offload.delivery_ledger import DeliveryLedger
from cdc_offload.demo.stack import AWS_ENV, MoodleDatabase
from cdc_offload.health import Health
from cdc_offload.model import Checkpoint, Envelope, Job, OutboxRow, Position, Recipient, RecipientKind, UserRow
from cdc_offload.sandbox import free_port
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks.message import sqs_document
from tests.conftest import CANARY
from tests.faults.invariant import report
from tests.support import init_state, ses_messages, wait_for
from tests.test_faults_throttling import _fake

REPO = Path(__file__).resolve().parents[1]
_names = iter(range(1, 10_000))


def row(outbox_id: int, recipients: int) -> bytes:
    """The sidecar's schema-2 message for an outbox row with `recipients` copies."""
    user = Recipient(0, RecipientKind.USER, f"user{outbox_id}@example.org", "Ada Lovelace", 1000 + outbox_id)
    others = tuple(
        Recipient(i, RecipientKind.MANAGER, f"manager{outbox_id}-{i}@example.org", f"Manager {i}", 50 + i)
        for i in range(1, recipients)
    )
    job = Job(
        OutboxRow(outbox_id, 1000 + outbox_id, "user_create", None, 0, 1, "Your account", f"<p>password: {CANARY}</p>"),
        UserRow(1000 + outbox_id, f"u{outbox_id}", "Ada", "Lovelace", "unused@example.org", "manual", False, False),
        Checkpoint(Position("binlog.000001", 4)),
        0,
        Envelope((user, *others)),
    )
    return sqs_document(job)


def queue_with_dead_letters(max_receives: int = 2) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    n = next(_names)
    dead = sqs.create_queue(QueueName=f"deliver-dlq-{n}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives}).decode()
    main = sqs.create_queue(QueueName=f"deliver-{n}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return main, dead


def depth(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def consumer(moodle: MoodleDatabase, queue_url: str, **overrides: Any) -> ConsumerSettings:
    init_state(moodle.settings(SinkSettings(queue_url="unused")))
    options: dict[str, Any] = {"concurrency": 2, "wait_seconds": 1, "visibility_timeout": 10, "retry_delay": 1}
    return ConsumerSettings(queue_url, moodle.writer, f"cdc_{moodle.database}", **{**options, **overrides})


def to_address(sent: Any) -> str:
    return str(sent.destinations["ToAddresses"][0])


@pytest.mark.slow
def test_every_recipient_gets_one_message_and_poison_goes_to_the_dead_letter_queue(
    moodle: MoodleDatabase, ses_sender: str
) -> None:
    main, dead = queue_with_dead_letters()
    sqs = boto3.client("sqs")
    old = {
        "schema_version": 1,
        "outbox_id": 3,
        "user_id": 1003,
        "recipient": {"address": "old3@example.org", "name": "Old Timer"},
        "subject": "Your account",
        "html_body": "<p>hello</p>",
    }
    for body in (row(1, 3), row(2, 1), orjson.dumps(old), b"not a message " + CANARY.encode()):
        sqs.send_message(QueueUrl=main, MessageBody=body.decode())
    before = len(ses_messages())
    settings = DeliverSettings(consumer(moodle, main), sender=ses_sender)
    metrics = DeliverMetrics()
    stop = threading.Event()
    worker = threading.Thread(target=run_deliver, args=(settings, stop, metrics))
    worker.start()
    try:
        wait_for(lambda: depth(main) == 0 and depth(dead) == 1, 60, "the queue drained, the poison dead-lettered")
    finally:
        stop.set()
        worker.join(30)
    sent = ses_messages()[before:]
    by_to = {to_address(m): m for m in sent}
    assert len(sent) == len(by_to) == 5, "one SendEmail per recipient, none twice"
    assert set(by_to) == {
        "Ada Lovelace <user1@example.org>",
        "Manager 1 <manager1-1@example.org>",
        "Manager 2 <manager1-2@example.org>",
        "Ada Lovelace <user2@example.org>",
        "Old Timer <old3@example.org>",
    }
    assert all(m.subject == "Your account" for m in sent)
    assert f"password: {CANARY}" in by_to["Manager 2 <manager1-2@example.org>"].body
    assert DeliveryLedger(moodle.writer, settings.consumer.state_schema).sent_copies(1).keys() == {0, 1, 2}
    assert metrics.messages.labels("deleted")._value.get() == 3
    assert metrics.messages.labels("unreadable")._value.get() == 2, "received twice, then the redrive policy"
    assert metrics.possible_duplicates._value.get() == 0
    (poison,) = sqs.receive_message(QueueUrl=dead)["Messages"]
    assert poison["Body"].startswith("not a message")


@pytest.mark.slow
def test_throttling_slows_the_worker_and_loses_nothing(moodle: MoodleDatabase, aws_endpoint: str) -> None:
    main, dead = queue_with_dead_letters(max_receives=5)
    sqs = boto3.client("sqs")
    for outbox_id in range(1, 7):
        sqs.send_message(QueueUrl=main, MessageBody=row(outbox_id, 2).decode())
    # SES throttles every send for a while (more than one copy's tries), then now and then. The
    # pace falls to SES's floor, so one copy's tries outlast the 10 s visibility timeout: the
    # worker must keep the message hidden meanwhile, or the other thread sends it again.
    script = ["rate"] * 8 + ["ok", "rate"] * 3 + ["ok"] * 100
    running = _fake(script, rate=40.0)
    fake = next(running)
    try:
        settings = DeliverSettings(consumer(moodle, main), sender="no-reply@academy.example", send_attempts=4)
        ses = ses_client(fake.url)
        metrics = DeliverMetrics()
        worker = DeliveryWorker(
            settings, Queue(main), ses, DeliveryLedger(moodle.writer, settings.consumer.state_schema), metrics
        )
        assert worker.rate == 40.0, "the account's MaxSendRate, read from SES"
        stop = threading.Event()
        thread = threading.Thread(
            target=run_consumers,
            args=(
                Consumer("deliver", settings.consumer, Queue(main), worker.handle),
                Health(60),
                metrics.dead_letters,
                stop,
            ),
        )
        thread.start()
        try:
            wait_for(lambda: depth(main) == 0, 120, "every message delivered")
        finally:
            stop.set()
            thread.join(30)
    finally:
        running.close()
    assert sorted(fake.accepted) == every_copy_once(range(1, 7), 2), "SES took every copy exactly once"
    assert metrics.copies.labels("accepted")._value.get() == 12
    assert fake.sends - 12 == script.count("rate") == 11, "each throttled send was tried again"
    assert depth(dead) == 0, "nothing given up"
    assert worker.rate < 40.0, "the pace went down"
    assert metrics.messages.labels("retry_later")._value.get() >= 1, "a copy throttled past its tries came back later"
    assert metrics.possible_duplicates._value.get() == 0
    report("deliver: SES throttled 11 of 23 sends", accepted=12, lost=0, rate_after=round(worker.rate, 2))


@pytest.mark.slow
def test_a_copy_slower_than_the_visibility_timeout_is_not_sent_again_by_another_worker(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    """Two workers on one queue; SES sits on the first SendEmail past the message's visibility
    timeout. The message must stay hidden while its copy is in SES's hands, or the second worker
    receives it and sends both copies again (the throttling test's 14 accepts for 12 copies)."""
    main, dead = queue_with_dead_letters(max_receives=5)
    boto3.client("sqs").send_message(QueueUrl=main, MessageBody=row(7, 2).decode())
    running = _fake(["ok"], held=1)
    fake = next(running)
    try:
        settings = DeliverSettings(consumer(moodle, main), sender="no-reply@academy.example", send_rate=50.0)
        ledger = DeliveryLedger(moodle.writer, settings.consumer.state_schema)
        first, second = (
            DeliveryWorker(settings, Queue(main), ses_client(fake.url), ledger, DeliverMetrics()) for _ in range(2)
        )
        visibility = settings.consumer.visibility_timeout
        (received,) = Queue(main).receive(visibility, wait=1)
        holder = threading.Thread(target=first.handle, args=(received,))
        holder.start()
        wait_for(lambda: fake.waiting == 1, 10, "the first copy's SendEmail in SES's hands")
        # Past the visibility timeout it was received with, and a little more: SQS's moment to hand it out again.
        for redelivered in receive_until(main, visibility + 5):
            second.handle(redelivered)
        fake.release.set()
        holder.join(60)
    finally:
        fake.release.set()
        running.close()
    assert sorted(fake.accepted) == every_copy_once([7], 2), "SES took each copy exactly once"
    assert depth(main) == 0 and depth(dead) == 0, "delivered and deleted"


def ses_client(url: str) -> Any:
    return boto3.client("sesv2", endpoint_url=url, config=client_config(2), region_name="us-east-1", **_keys())


def every_copy_once(outbox_ids: Any, recipients: int) -> list[tuple[str, str, str]]:
    """(outbox_id tag, recipient_index tag, To) of every copy `row()` makes, once each."""
    expected = []
    for outbox_id in outbox_ids:
        expected.append((str(outbox_id), "0", f"Ada Lovelace <user{outbox_id}@example.org>"))
        expected += [
            (str(outbox_id), str(i), f"Manager {i} <manager{outbox_id}-{i}@example.org>") for i in range(1, recipients)
        ]
    return sorted(expected)


def receive_until(url: str, seconds: float) -> list[Received]:
    """What SQS hands out within `seconds` (empty when the message stays hidden all along)."""
    deadline = time.monotonic() + seconds
    queue = Queue(url)
    while time.monotonic() < deadline:
        got = queue.receive(10, wait=1)
        if got:
            return got
    return []


def test_a_used_up_daily_quota_is_not_retried_and_holds_every_message(
    moodle: MoodleDatabase, aws_endpoint: str
) -> None:
    main, dead = queue_with_dead_letters(max_receives=5)
    boto3.client("sqs").send_message(QueueUrl=main, MessageBody=row(1, 2).decode())
    running = _fake(["quota"])
    fake = next(running)
    settings = DeliverSettings(consumer(moodle, main), sender="no-reply@academy.example", quota_pause=600)
    ses = boto3.client("sesv2", endpoint_url=fake.url, config=client_config(2), region_name="us-east-1", **_keys())
    metrics = DeliverMetrics()
    worker = DeliveryWorker(
        settings, Queue(main), ses, DeliveryLedger(moodle.writer, settings.consumer.state_schema), metrics
    )
    (received,) = Queue(main).receive(visibility=10, wait=1)
    worker.handle(received)
    assert fake.sends == 1, "one request: neither botocore nor the worker retried a daily-quota answer"
    assert metrics.quota_exhausted._value.get() == 1
    assert worker.paused_for() > 500, "every thread holds back for the quota pause"
    assert depth(main) == 1 and depth(dead) == 0, "the message waits on the queue, not deleted, not dead-lettered"
    running.close()


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


# -- crash between SES's accept and SQS's delete: a real process, a real SIGKILL -----------------
def start_worker(
    moodle: MoodleDatabase, queue_url: str, sender: str, endpoint: str, crash_at: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_OFFLOAD_", "AWS_"))}
    env.update(AWS_ENV)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "CDC_OFFLOAD_QUEUE_URL": queue_url,
            "CDC_OFFLOAD_FROM": sender,
            "CDC_OFFLOAD_WRITER_DSN": f"mysql://{moodle.writer.user}@{moodle.writer.host}:{moodle.writer.port}/{moodle.database}",
            "CDC_OFFLOAD_WRITER_PASSWORD": moodle.writer.password,
            "CDC_OFFLOAD_STATE_SCHEMA": f"cdc_{moodle.database}",
            "CDC_OFFLOAD_CONCURRENCY": "1",
            "CDC_OFFLOAD_WAIT_SECONDS": "1",
            "CDC_OFFLOAD_VISIBILITY_TIMEOUT": "10",
            "CDC_OFFLOAD_METRICS_HOST": "127.0.0.1",
            "CDC_OFFLOAD_METRICS_PORT": str(port),
            "PYTHONPATH": str(REPO),
        }
    )
    if crash_at:
        env["CDC_OFFLOAD_CRASH_AT"] = crash_at
    command = [shutil.which("cdc-offload") or "cdc-offload", "deliver"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, port


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rpartition(" ")[2])
    raise AssertionError(f"{name} not exported")


@pytest.mark.parametrize(("crash_at", "duplicates"), [("deliver_after_ses_accept", 1), ("deliver_before_delete", 0)])
@pytest.mark.slow
def test_a_crash_between_ses_accept_and_sqs_delete_costs_at_most_one_counted_duplicate(
    moodle: MoodleDatabase, ses_sender: str, aws_endpoint: str, crash_at: str, duplicates: int
) -> None:
    main, dead = queue_with_dead_letters(max_receives=5)
    init_state(moodle.settings(SinkSettings(queue_url="unused")))
    outbox_id = 9000 + next(_names)
    boto3.client("sqs").send_message(QueueUrl=main, MessageBody=row(outbox_id, 3).decode())
    before = len(ses_messages())
    crashing, _ = start_worker(moodle, main, ses_sender, aws_endpoint, crash_at)
    assert crashing.wait(60) == -signal.SIGKILL, "the worker died at the crash point"
    restarted, port = start_worker(moodle, main, ses_sender, aws_endpoint, None)
    try:
        # The dead worker held the message for its SendEmail's whole timeout (33 s), not just 10 s.
        wait_for(lambda: depth(main) == 0, 120, "the redelivered message finished")
        counted = wait_for(lambda: _scrape(port, "cdc_offload_deliver_copies_total"), 10, "metrics served")
        duplicates_counted = metric(port, "cdc_offload_deliver_possible_duplicates_total")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(30) == 0, "SIGTERM drains and exits 0"
    sent = [to_address(m) for m in ses_messages()[before:]]
    assert len(set(sent)) == 3, "every recipient got it"
    assert len(sent) == 3 + duplicates
    assert duplicates_counted == duplicates, "the possible duplicate is counted"
    assert depth(dead) == 0
    report(
        f"deliver: SIGKILL at {crash_at}",
        recipients=3,
        sends=len(sent),
        duplicates=duplicates,
        counted=duplicates_counted,
        already_sent=counted,
    )


def _scrape(port: int, name: str) -> float | None:
    try:
        return (
            sum(
                float(line.rpartition(" ")[2])
                for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
                .splitlines()
                if line.startswith(name + '{result="already_sent"}')
            )
            or -1.0
        )
    except OSError:
        return None
