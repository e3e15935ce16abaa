"""SES's word per copy in ledger_recipient, on the real MariaDB: before the sidecar's own row
exists, redelivered, out of order, and without tags."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from cdc_offload.deliver import events
from cdc_offload.delivery_event import DeliveryEvent
from cdc_offload.delivery_ledger import DeliveryLedger, LedgerCopy, recipients_of
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import SinkSettings
from tests.support import init_state
from tests.support.ses_events import ses_event

T0 = dt.datetime(2026, 11, 28, 9, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(moodle: MoodleDatabase) -> DeliveryLedger:
    init_state(moodle.settings(SinkSettings(queue_url="unused")))
    recorder = DeliveryLedger(moodle.writer, f"cdc_{moodle.database}")
    yield recorder  # type: ignore[misc]
    recorder.close()


def event(kind: str, seconds: float, message_id: str = "ses-1", **tags: str) -> DeliveryEvent:
    record = ses_event(
        kind, message_id, "Ada@Example.org", at=T0 + dt.timedelta(seconds=seconds), sent_at=T0, tags=tags
    )
    parsed = events.parse(json.dumps(record))
    assert isinstance(parsed, DeliveryEvent)
    return parsed


def row(moodle: MoodleDatabase, outbox_id: int, index: int) -> dict[str, Any]:
    (entry,) = [
        r for r in recipients_of(moodle.writer, f"cdc_{moodle.database}", [outbox_id]) if r.recipient_index == index
    ]
    return {
        "kind": entry.kind,
        "address": entry.address,
        "ses_message_id": entry.ses_message_id,
        "delivery": entry.delivery,
        "detail": entry.delivery_detail,
        "at": entry.delivery_at,
    }


def test_an_event_before_any_ledger_row_creates_the_copys_row_by_its_tags(
    moodle: MoodleDatabase, ledger: DeliveryLedger
) -> None:
    assert ledger.record_event(event("Delivery", 2, outbox_id="10", recipient_index="1"))
    recorded = row(moodle, 10, 1)
    assert recorded["delivery"] == "delivered" and recorded["ses_message_id"] == "ses-1"
    assert recorded["kind"] == "unknown", "a placeholder until the sidecar writes its own columns"
    assert recorded["address"] == "a***@example.org"
    assert recorded["at"] == "2026-11-28T09:00:02.000000Z"
    # The worker's write of the SES message id then fills in what it knows, keeping SES's word.
    ledger.record_sent(LedgerCopy(10, 1, "manager", 42, "ada@example.org"), "ses-1")
    assert row(moodle, 10, 1)["delivery"] == "delivered"


def test_redelivered_and_reordered_events_end_in_the_same_state(moodle: MoodleDatabase, ledger: DeliveryLedger) -> None:
    ledger.record_sent(LedgerCopy(20, 0, "user", 7, "ada@example.org"), "ses-20")
    tags = {"outbox_id": "20", "recipient_index": "0"}
    sequence = [
        event("Send", 0, "ses-20", **tags),
        event("DeliveryDelay", 5, "ses-20", **tags),
        event("Delivery", 60, "ses-20", **tags),
        event("Complaint", 3600, "ses-20", **tags),
    ]
    for order in (sequence, sequence[::-1], [sequence[3], sequence[1], sequence[3], sequence[0], sequence[2]]):
        for item in order:
            assert ledger.record_event(item)
        recorded = row(moodle, 20, 0)
        assert (recorded["delivery"], recorded["detail"]) == ("complained", "abuse"), "the latest event wins"
        assert recorded["at"] == "2026-11-28T10:00:00.000000Z"
        assert recorded["kind"] == "user", "the worker's columns are not overwritten"


def test_a_later_bounce_replaces_a_delay_and_an_older_delay_does_not_come_back(
    moodle: MoodleDatabase, ledger: DeliveryLedger
) -> None:
    tags = {"outbox_id": "30", "recipient_index": "0"}
    ledger.record_event(event("DeliveryDelay", 10, "ses-30", **tags))
    assert row(moodle, 30, 0)["delivery"] == "delayed"
    ledger.record_event(event("Bounce", 20, "ses-30", **tags))
    ledger.record_event(event("DeliveryDelay", 15, "ses-30", **tags))
    recorded = row(moodle, 30, 0)
    assert (recorded["delivery"], recorded["detail"]) == ("bounced", "permanent/General")


def test_an_event_without_tags_finds_its_copy_by_the_ses_message_id_or_is_unmatched(
    moodle: MoodleDatabase, ledger: DeliveryLedger
) -> None:
    ledger.record_sent(LedgerCopy(40, 2, "emailtoother", None, "hr@example.org"), "ses-40-2")
    assert ledger.record_event(event("Bounce", 5, "ses-40-2"))
    assert row(moodle, 40, 2)["delivery"] == "bounced"
    assert not ledger.record_event(event("Delivery", 5, "somebody-elses-mail"))
    assert ledger.sent_copies(40) == {2: "ses-40-2"}
