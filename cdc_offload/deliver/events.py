"""SES's word on each copy it sent, read from AWS's documented JSON: event publishing records
(a configuration set's `eventType`: Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay) and
identity feedback notifications (`notificationType`), inside SNS's envelope or delivered raw.

Only ids, times, outcome names and the affected address come out; subjects, headers and bodies
stay in the notification.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import orjson

from cdc_offload.delivery_event import DeliveryEvent, Outcome
from cdc_offload.sinks.ses import OUTBOX_TAG, RECIPIENT_TAG

# AWS's type names (event publishing and identity notifications spell some differently).
_OUTCOMES = {
    "Send": Outcome.SENT,
    "Delivery": Outcome.DELIVERED,
    "Bounce": Outcome.BOUNCED,
    "Complaint": Outcome.COMPLAINED,
    "Reject": Outcome.REJECTED,
    "DeliveryDelay": Outcome.DELAYED,
}
# Where each type keeps its own timestamp; Send and Reject have none and use the mail's.
_SECTIONS = {
    Outcome.SENT: "send",
    Outcome.DELIVERED: "delivery",
    Outcome.BOUNCED: "bounce",
    Outcome.COMPLAINED: "complaint",
    Outcome.REJECTED: "reject",
    Outcome.DELAYED: "deliveryDelay",
}
BOUNCE_TYPES = ("permanent", "transient", "undetermined")


class Unreadable(ValueError):
    """Not an SES notification this consumer can read. The text never quotes the notification."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A notification that says nothing about delivery (Open, Click, an SNS subscription, ...)."""

    kind: str


def parse(body: str | bytes) -> DeliveryEvent | Ignored:
    notification = _json(body)
    if notification.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return Ignored(str(notification["Type"]))
    if notification.get("Type") == "Notification" and isinstance(notification.get("Message"), str):
        notification = _json(notification["Message"])  # SNS's envelope around SES's record
    kind = notification.get("eventType") or notification.get("notificationType")
    if not isinstance(kind, str):
        raise Unreadable("neither `eventType` nor `notificationType`: not an SES notification")
    outcome = _OUTCOMES.get(kind)
    if outcome is None:
        return Ignored(kind)
    mail = notification.get("mail")
    if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str):
        raise Unreadable(f"{kind} notification without `mail.messageId`")
    section = notification.get(_SECTIONS[outcome]) or {}
    if not isinstance(section, dict):
        raise Unreadable(f"{kind} notification whose `{_SECTIONS[outcome]}` is not an object")
    sent_at = _time(mail.get("timestamp"))
    at = _time(section.get("timestamp")) or sent_at
    if at is None:
        raise Unreadable(f"{kind} notification without a timestamp")
    outbox_id, index = _tags(mail.get("tags"))
    detail, bounce_type = _detail(outcome, section)
    return DeliveryEvent(
        outcome=outcome,
        ses_message_id=mail["messageId"],
        at=at,
        sent_at=sent_at,
        outbox_id=outbox_id,
        recipient_index=index,
        addresses=_addresses(outcome, section, mail),
        detail=detail,
        bounce_type=bounce_type,
    )


def _json(body: str | bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unreadable("the body is not JSON: not an SES notification") from None
    if not isinstance(document, dict):
        raise Unreadable("the body is not a JSON object: not an SES notification")
    return document


def _time(value: object) -> dt.datetime | None:
    """AWS's ISO 8601 times ("2017-08-05T00:41:02.669Z"), as naive UTC for DATETIME(6)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace(" ", ""))
    except ValueError:
        raise Unreadable("a timestamp that is not ISO 8601") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _tags(tags: object) -> tuple[int | None, int | None]:
    if not isinstance(tags, dict):
        return None, None

    def number(name: str) -> int | None:
        values = tags.get(name)
        value = values[0] if isinstance(values, list) and values else values
        return int(value) if isinstance(value, str) and value.isdigit() else None

    outbox_id, index = number(OUTBOX_TAG), number(RECIPIENT_TAG)
    # Half a key finds no row: both, or match by message id instead.
    return (outbox_id, index) if outbox_id is not None and index is not None else (None, None)


def _detail(outcome: Outcome, section: dict[str, Any]) -> tuple[str | None, str | None]:
    if outcome is Outcome.BOUNCED:
        kind = str(section.get("bounceType") or "Undetermined").lower()
        bounce_type = kind if kind in BOUNCE_TYPES else "undetermined"
        return f"{bounce_type}/{_word(section.get('bounceSubType'))}", bounce_type
    if outcome is Outcome.COMPLAINED:
        return _word(section.get("complaintFeedbackType") or section.get("complaintSubType")), None
    if outcome is Outcome.DELAYED:
        return _word(section.get("delayType")), None
    if outcome is Outcome.REJECTED:
        return _word(section.get("reason")), None
    return None, None


def _word(value: object) -> str:
    """A short name from AWS's fixed vocabularies, safe for a VARCHAR(64) column."""
    text = "".join(ch for ch in str(value or "unknown") if ch.isalnum() or ch in " -_.")
    return text[:40] or "unknown"


def _addresses(outcome: Outcome, section: dict[str, Any], mail: dict[str, Any]) -> tuple[str, ...]:
    if outcome is Outcome.BOUNCED:
        found = [r.get("emailAddress") for r in section.get("bouncedRecipients") or [] if isinstance(r, dict)]
    elif outcome is Outcome.COMPLAINED:
        found = [r.get("emailAddress") for r in section.get("complainedRecipients") or [] if isinstance(r, dict)]
    elif outcome is Outcome.DELAYED:
        found = [r.get("emailAddress") for r in section.get("delayedRecipients") or [] if isinstance(r, dict)]
    elif outcome is Outcome.DELIVERED:
        found = list(section.get("recipients") or [])
    else:
        found = []
    if not found:
        found = list(mail.get("destination") or [])
    addresses = (parseaddr(a)[1].strip().lower() for a in found if isinstance(a, str))
    return tuple(a for a in addresses if "@" in a)
