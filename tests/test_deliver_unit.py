"""The delivery worker's and the events consumer's reading of their inputs, as pure logic: the
sidecar's SQS message (both schemas) and SES's notifications in AWS's documented shapes."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest

from cdc_offload.deliver import events, message
from cdc_offload.deliver.events import Ignored
from cdc_offload.delivery_event import DeliveryEvent, Outcome
from cdc_offload.model import (
    Checkpoint,
    Envelope,
    Job,
    OutboxRow,
    Position,
    Recipient,
    RecipientKind,
    Sender,
    UserRow,
)
from cdc_offload.sinks.message import sqs_document
from cdc_offload.store import address_hash, masked_address
from tests.conftest import CANARY
from tests.support.ses_events import ses_event, sns_envelope

BODY = f"<p>Hi Ada,</p><p>username: ada</br>password: {CANARY}</br></p>"
AT = dt.datetime(2026, 11, 28, 9, 30, 1, 250_000, tzinfo=dt.UTC)


def job(envelope: Envelope | None = None) -> Job:
    return Job(
        OutboxRow(77, 15093, "user_create", None, 0, 1, "Your new account", BODY),
        UserRow(15093, "ada", "Ada", "Lovelace", "ada@example.org", "manual", False, False),
        Checkpoint(Position("binlog.000001", 4)),
        1_700_000_000,
        envelope,
    )


def test_schema_2_gives_one_copy_per_recipient_with_the_sender_and_both_parts() -> None:
    everyone = Envelope(
        (
            Recipient(0, RecipientKind.USER, "ada@example.org", "Ada Lovelace", 15093),
            Recipient(1, RecipientKind.MANAGER, "boss@example.org", "Grace Hopper", 2),
            Recipient(2, RecipientKind.EMAILTOOTHER, "hr@example.org"),
        ),
        Sender("training@academy.example", "Demo Academy", ("help@academy.example",)),
    )
    parsed = message.parse(sqs_document(job(everyone)))
    assert (parsed.schema_version, parsed.outbox_id, parsed.user_id) == (2, 77, 15093)
    assert [(c.index, c.kind, c.address, c.user_id) for c in parsed.copies] == [
        (0, "user", "ada@example.org", 15093),
        (1, "manager", "boss@example.org", 2),
        (2, "emailtoother", "hr@example.org", None),
    ]
    parts = parsed.parts(parsed.copies[1], "no-reply@academy.example")
    assert parts.to == "Grace Hopper <boss@example.org>"
    assert parts.sender == "Demo Academy <training@academy.example>"
    assert parts.reply_to == ("help@academy.example",)
    assert parts.html_body == BODY and f"password: {CANARY}" in parts.text_body
    assert parts.subject == "Your new account"


def test_schema_2_without_a_sender_of_its_own_uses_the_workers_from() -> None:
    parsed = message.parse(sqs_document(job()))
    parts = parsed.parts(parsed.copies[0], "Academy <no-reply@academy.example>")
    assert parts.sender == "Academy <no-reply@academy.example>"
    assert parts.to == "Ada Lovelace <ada@example.org>"


def test_schema_1_of_older_sidecars_is_still_sent() -> None:
    old = {
        "schema_version": 1,
        "outbox_id": 5,
        "user_id": 9,
        "company_id": 1,
        "recipient": {"address": "old@example.org", "name": "Old Timer"},
        "subject": "Welcome",
        "html_body": BODY,
        "template": "user_create",
        "event_time": 1,
    }
    parsed = message.parse(json.dumps(old))
    (copy,) = parsed.copies
    assert (copy.index, copy.kind, copy.address, copy.user_id) == (0, "user", "old@example.org", 9)
    assert parsed.text_body.startswith("Hi Ada,") and CANARY in parsed.text_body
    assert parsed.parts(copy, "no-reply@academy.example").sender == "no-reply@academy.example"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json " + CANARY.encode(), "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"schema_version": 3, "html_body": CANARY}), "schema_version 3"),
        (orjson.dumps({"schema_version": "2", "html_body": CANARY}), "schema_version <str>"),
        (
            orjson.dumps({"schema_version": 2, "outbox_id": 1, "user_id": 1, "subject": "s", "html_body": CANARY}),
            "recipients",
        ),
    ],
)
def test_what_is_not_a_sidecar_message_is_refused_without_quoting_it(body: bytes, problem: str) -> None:
    with pytest.raises(message.Unreadable) as refused:
        message.parse(body)
    assert problem in str(refused.value)
    assert CANARY not in str(refused.value)


def test_a_recipient_address_with_a_line_break_or_two_copies_with_one_index_are_refused() -> None:
    document = orjson.loads(sqs_document(job()))
    document["recipients"][0]["address"] = "ada@example.org\r\nBcc: all@example.org"
    with pytest.raises(message.Unreadable, match="not one email address"):
        message.parse(orjson.dumps(document))
    document = orjson.loads(sqs_document(job()))
    document["recipients"].append(dict(document["recipients"][0], address="twin@example.org"))
    with pytest.raises(message.Unreadable, match="share one index"):
        message.parse(orjson.dumps(document))


# -- SES notifications --------------------------------------------------------------------------
TAGS = {"outbox_id": "77", "recipient_index": "2"}
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


def read(kind: str, *, envelope: bool = True, **options: object) -> DeliveryEvent:
    record = ses_event(kind, "0100-abc-000000", "HR Team <HR@Example.org>", at=AT, tags=TAGS, **options)  # type: ignore[arg-type]
    body = json.dumps(sns_envelope(record, TOPIC) if envelope else record)
    parsed = events.parse(body)
    assert isinstance(parsed, DeliveryEvent)
    return parsed


def test_every_documented_event_type_names_its_copy_by_the_tags() -> None:
    sent_at = AT - dt.timedelta(seconds=3)
    cases = {
        "Send": (Outcome.SENT, None, sent_at),
        "Delivery": (Outcome.DELIVERED, None, AT),
        "Bounce": (Outcome.BOUNCED, "permanent/General", AT),
        "Complaint": (Outcome.COMPLAINED, "abuse", AT),
        "Reject": (Outcome.REJECTED, "Bad content", sent_at),
        "DeliveryDelay": (Outcome.DELAYED, "TransientCommunicationFailure", AT),
    }
    for kind, (outcome, detail, at) in cases.items():
        for envelope in (True, False):
            parsed = read(kind, envelope=envelope, sent_at=sent_at)
            assert parsed.outcome is outcome, kind
            assert (parsed.outbox_id, parsed.recipient_index) == (77, 2)
            assert parsed.ses_message_id == "0100-abc-000000"
            assert parsed.detail == detail, kind
            assert parsed.at == at.replace(tzinfo=None), kind
            assert parsed.sent_at == sent_at.replace(tzinfo=None)
            assert parsed.addresses == ("hr@example.org",)
    assert read("Bounce").bounce_type == "permanent"


def test_identity_feedback_without_tags_is_matched_by_message_id_later() -> None:
    # An identity's feedback notification (`notificationType`), as moto and SES send them: no tags.
    from moto.ses.feedback import BOUNCE, COMMON_MAIL

    notification = {**COMMON_MAIL, "notificationType": "Bounce", "bounce": BOUNCE}
    parsed = events.parse(json.dumps(sns_envelope(notification, TOPIC)))
    assert isinstance(parsed, DeliveryEvent)
    assert parsed.outcome is Outcome.BOUNCED and parsed.outbox_id is None and parsed.recipient_index is None
    assert parsed.ses_message_id == COMMON_MAIL["mail"]["messageId"]  # type: ignore[index]


def test_notifications_that_say_nothing_about_delivery_are_ignored_and_junk_is_unreadable() -> None:
    opened = ses_event("Open", "m", "a@example.org", at=AT)
    assert events.parse(json.dumps(sns_envelope(opened, TOPIC))) == Ignored("Open")
    assert events.parse(json.dumps({"Type": "SubscriptionConfirmation", "Token": "x"})) == Ignored(
        "SubscriptionConfirmation"
    )
    for junk in (b"{", b"[]", json.dumps({"Type": "Notification", "Message": "{}"}).encode()):
        with pytest.raises(events.Unreadable):
            events.parse(junk)
    without_id = ses_event("Delivery", "m", "a@example.org", at=AT)
    del without_id["mail"]["messageId"]
    with pytest.raises(events.Unreadable, match="messageId"):
        events.parse(json.dumps(without_id))


def test_half_a_tag_key_is_no_key() -> None:
    record = ses_event("Delivery", "m", "a@example.org", at=AT, tags={"outbox_id": "77"})
    parsed = events.parse(json.dumps(record))
    assert isinstance(parsed, DeliveryEvent) and parsed.outbox_id is None


def test_the_ledger_keeps_a_hash_and_a_mask_of_an_address_never_the_address() -> None:
    assert address_hash(" Ada@Example.org ") == address_hash("ada@example.org")
    assert len(address_hash("ada@example.org")) == 64
    assert masked_address("Ada@Example.org") == "a***@example.org"
    assert "ada" not in masked_address("ada@example.org")
