"""The SQS shape end to end on moto over real HTTP: users created in MariaDB → the real sidecar
(`--sink sqs`) → SQS → `deliver` → SES (one message per recipient) → SES event notifications in
AWS's documented format, published through moto's SNS (enveloped and raw) to an SQS queue →
`events` → the ledger says delivered / bounced / complained for exactly the right copies, as do
`ledger --user` and `/ledger/users/<id>`. Every recipient of every message is checked."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner

from cdc_offload.cli import main as cli
from cdc_offload.deliver.metrics import DeliverMetrics, EventMetrics
from cdc_offload.deliver.runtime import run_deliver, run_events
from cdc_offload.deliver.settings import ConsumerSettings, DeliverSettings
from cdc_offload.delivery_ledger import recipients_of
from cdc_offload.demo.moodle import SUBJECT, NewUser, create_user_iomad, iomad_headers
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.sandbox import free_port
from cdc_offload.settings import SinkSettings
from tests.conftest import CANARY
from tests.support import Sidecar, ses_messages, wait_for
from tests.support.ses_events import ses_event

SENDER = "no-reply@academy.example"
OTHER = "hr@partner.example"
# Who gets which outcome: the user's username → SES's final word on the user's copy.
OUTCOMES = {"delivered": "delivered", "bounces": "bounced", "complains": "complained"}


@dataclass
class Flow:
    moodle: MoodleDatabase
    schema: str
    users: dict[str, tuple[int, int]]  # username → (user id, outbox id)
    messages: dict[int, dict[str, Any]]  # outbox id → the sidecar's SQS message
    sent: list[Any]  # moto's sent-message store, this flow's part
    requests: dict[str, dict[str, Any]]  # To header → the SendEmail request as it went over HTTP
    ledger: dict[tuple[int, int], Any] = field(default_factory=dict)
    http_rows: dict[int, Any] = field(default_factory=dict)
    cli_rows: list[Any] = field(default_factory=list)
    event_metrics: EventMetrics = field(default_factory=EventMetrics)
    deliver_metrics: DeliverMetrics = field(default_factory=DeliverMetrics)


def queue_pair(sqs: Any, name: str) -> str:
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5}).decode()
    return str(sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"])


def peek_all(sqs: Any, url: str, count: int) -> dict[int, dict[str, Any]]:
    """The queue's messages, read without taking them (visibility 0): `deliver` gets them all."""
    seen: dict[int, dict[str, Any]] = {}

    def more() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        ):
            body = orjson.loads(message["Body"])
            seen[body["outbox_id"]] = body
        return len(seen) >= count

    wait_for(more, 30, f"{count} messages on the queue")
    return seen


def recorded_send_requests(path: Path) -> dict[str, dict[str, Any]]:
    requests: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if "/v2/email/outbound-emails" not in entry["url"]:
            continue
        body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"].encode()
        request = json.loads(body)
        requests[request["Destination"]["ToAddresses"][0]] = request
    return requests


@pytest.fixture(scope="module")
def flow(db_server: Any, aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    from moto.moto_api import recorder

    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    moodle = moodle_database(db_server, database="delivery_e2e")
    schema = f"cdc_{moodle.database}"
    mail_queue, events_queue = queue_pair(sqs, "e2e-credentials"), queue_pair(sqs, "e2e-ses-events")
    # The configuration set's event destination is an SNS topic; the queue is subscribed to it.
    # Two subscriptions: SNS's JSON envelope, and raw message delivery.
    events_arn = sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topics = {}
    for raw in (False, True):
        topic = sns.create_topic(Name=f"ses-events-{'raw' if raw else 'enveloped'}")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=events_arn,
            Attributes={"RawMessageDelivery": "true" if raw else "false"},
        )
        topics[raw] = topic

    sidecar = Sidecar(
        moodle.settings(
            SinkSettings(queue_url=mail_queue, deadline=20.0),
            heartbeat=0.5,
            read_timeout=5.0,
            checkpoint_interval=0.2,
            metrics_port=free_port(),
            metrics_host="127.0.0.1",
        )
    ).start()
    admin = moodle.admin()
    users = {
        name: create_user_iomad(
            admin,
            NewUser(
                name,
                f"{name}@learners.example",
                CANARY,
                firstname=name.title(),
                headers=iomad_headers(emailtoother=OTHER) if name == "complains" else iomad_headers(),
            ),
        )
        for name in OUTCOMES
    }
    wait_for(lambda: sidecar.resolved() >= len(users), 60, "the sidecar resolved every row")
    messages = peek_all(sqs, mail_queue, len(users))
    copies = sum(len(m["recipients"]) for m in messages.values())

    recording = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    recorder._location = str(recording)  # moto's request recorder, kept out of the repository
    recorder.reset_recording()
    recorder.start_recording()
    before = len(ses_messages())
    result = Flow(moodle, schema, users, messages, [], {})
    consumer = {"concurrency": 2, "wait_seconds": 1, "visibility_timeout": 30, "retry_delay": 1}
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=run_deliver,
            args=(
                DeliverSettings(ConsumerSettings(mail_queue, moodle.writer, schema, **consumer), sender=SENDER),
                stop,
                result.deliver_metrics,
            ),
        ),
        threading.Thread(
            target=run_events,
            args=(ConsumerSettings(events_queue, moodle.writer, schema, **consumer), stop, result.event_metrics),
        ),
    ]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(ses_messages()) - before >= copies, 60, f"{copies} messages sent by SES")
        wait_for(
            lambda: result.deliver_metrics.messages.labels("deleted")._value.get() == len(messages),
            30,
            "every SQS message deleted",
        )
        recorder.stop_recording()
        result.sent = ses_messages()[before:]
        result.requests = recorded_send_requests(recording)
        ledger = {(r.outbox_id, r.recipient_index): r for r in recipients_of(moodle.writer, schema, list(messages))}

        # SES's notifications for every copy: Send, then its outcome. The complaining user's
        # Complaint is published before the (earlier) Delivery it follows: order by timestamps.
        sent_at = dt.datetime.now(dt.UTC)
        published: list[str] = []
        for message in messages.values():
            username = next(name for name, (_, outbox) in users.items() if outbox == message["outbox_id"])
            for recipient in message["recipients"]:
                copy = ledger[(message["outbox_id"], recipient["index"])]
                to = next(t for t in result.requests if recipient["address"] in t)
                tags = {t["Name"]: t["Value"] for t in result.requests[to]["EmailTags"]}
                outcome = OUTCOMES[username] if recipient["index"] == 0 else "delivered"

                def publish(kind: str, seconds: float, raw: bool) -> None:
                    record = ses_event(
                        kind,
                        copy.ses_message_id,  # noqa: B023 - used at once, in this iteration
                        recipient["address"],  # noqa: B023
                        at=sent_at + dt.timedelta(seconds=seconds),
                        sent_at=sent_at,
                        tags=tags,  # noqa: B023
                    )
                    sns.publish(TopicArn=topics[raw], Message=json.dumps(record))
                    published.append(kind)

                publish("Send", 0, raw=True)
                if outcome == "complained":
                    publish("Complaint", 120, raw=False)
                    publish("Delivery", 2, raw=True)
                else:
                    publish({"delivered": "Delivery", "bounced": "Bounce"}[outcome], 2, raw=False)

        def recorded() -> bool:
            rows = recipients_of(moodle.writer, schema, list(messages))
            result.ledger = {(r.outbox_id, r.recipient_index): r for r in rows}
            return len(rows) == copies and all(r.delivery not in (None, "sent", "sending") for r in rows)

        wait_for(recorded, 60, "SES's word on every copy in the ledger")
        # Late ones included (a Delivery older than the Complaint already recorded): all consumed.
        counted = result.event_metrics.events
        wait_for(
            lambda: sum(counted.labels(o)._value.get() for o in {*OUTCOMES.values(), "sent"}) == len(published),
            30,
            f"all {len(published)} notifications recorded",
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
        recorder.stop_recording()
    port = sidecar.settings.metrics_port
    for user_id, _ in users.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ledger/users/{user_id}", timeout=5) as response:
            result.http_rows[user_id] = orjson.loads(response.read())
    sidecar.stop()
    delivered_user = users["delivered"][0]
    outcome = CliRunner().invoke(
        cli,
        ["ledger", "--user", str(delivered_user), "--json", "--state-schema", schema],
        env={"CDC_OFFLOAD_WRITER_DSN": _dsn(moodle), "CDC_OFFLOAD_WRITER_PASSWORD": moodle.writer.password},
    )
    assert outcome.exit_code == 0, outcome.output
    result.cli_rows = orjson.loads(outcome.output)
    yield result


def _dsn(moodle: MoodleDatabase) -> str:
    return f"mysql://{moodle.writer.user}@{moodle.writer.host}:{moodle.writer.port}/{moodle.database}"


def test_every_recipient_gets_exactly_one_message_with_both_parts(flow: Flow) -> None:
    expected = {
        (message["outbox_id"], r["index"]): r for message in flow.messages.values() for r in message["recipients"]
    }
    assert len(flow.sent) == len(expected), "one SendEmail per recipient, no more"
    by_to = {m.destinations["ToAddresses"][0]: m for m in flow.sent}
    assert len(by_to) == len(flow.sent)
    for (outbox_id, index), recipient in expected.items():
        # A copy to a bare address (emailtoother, a manager) has no display name, so no angle brackets.
        (to,) = [t for t in by_to if parseaddr(t)[1] == recipient["address"]]
        sent = by_to[to]
        assert sent.subject == SUBJECT
        assert f"password: {CANARY}</br>" in sent.body, "the HTML part"
        request = flow.requests[to]
        parts = request["Content"]["Simple"]["Body"]
        assert f"password: {CANARY}\n" in parts["Text"]["Data"], "the text part"
        assert parts["Html"]["Data"] == sent.body
        tags = {t["Name"]: t["Value"] for t in request["EmailTags"]}
        assert tags == {"outbox_id": str(outbox_id), "recipient_index": str(index)}
        assert flow.ledger[(outbox_id, index)].ses_message_id == sent.id, "the ledger has SES's message id"


def test_the_ledger_shows_ses_word_for_every_recipient(flow: Flow) -> None:
    for username, (user_id, outbox_id) in flow.users.items():
        for recipient in flow.messages[outbox_id]["recipients"]:
            copy = flow.ledger[(outbox_id, recipient["index"])]
            wanted = OUTCOMES[username] if recipient["index"] == 0 else "delivered"
            assert copy.delivery == wanted, (username, recipient["index"])
            assert copy.delivery_detail == {"bounced": "permanent/General", "complained": "abuse"}.get(wanted)
        answer = flow.http_rows[user_id]
        (row,) = answer["rows"]
        assert row["status"] == "offloaded"
        assert row["recipients"][0]["delivery"] == OUTCOMES[username], "/ledger/users/<id>"
    (row,) = flow.cli_rows
    assert [c["delivery"] for c in row["recipients"]] == ["delivered"], "ledger --user"
    assert row["recipients"][0]["address"] == "d***@learners.example", "masked, never the address"
    metrics = flow.event_metrics
    copies = len(flow.ledger)
    assert metrics.events.labels("sent")._value.get() == copies
    assert metrics.events.labels("bounced")._value.get() == 1
    assert metrics.bounces.labels("permanent")._value.get() == 1
    assert metrics.events.labels("complained")._value.get() == 1
    assert metrics.events.labels("delivered")._value.get() == copies - 1
    assert metrics.latency._sum.get() == pytest.approx(2.0 * (copies - 1), abs=0.01)
    assert CANARY not in repr(list(flow.ledger.values()))


def test_the_emailtoother_copy_is_delivered_and_recorded_too(flow: Flow) -> None:
    _, outbox_id = flow.users["complains"]
    recipients = flow.messages[outbox_id]["recipients"]
    others = [r for r in recipients if r["kind"] == "emailtoother"]
    if not others:
        pytest.skip(
            "the sidecar on this branch sends the user's copy only (issue 11's recipient look-up is not merged): "
            "the emailtoother copy is checked here once it is"
        )
    (other,) = others
    assert other["address"] == OTHER
    copy = flow.ledger[(outbox_id, other["index"])]
    assert copy.delivery == "delivered" and copy.kind == "emailtoother"
    assert any(
        f"<{OTHER}>" in m.destinations["ToAddresses"][0] or m.destinations["ToAddresses"][0] == OTHER for m in flow.sent
    )
