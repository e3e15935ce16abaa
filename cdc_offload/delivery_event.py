"""What SES said about one copy we sent: the value `events` reads from a notification and the
delivery ledger records (below both, so neither imports the other's package)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    REJECTED = "rejected"
    DELAYED = "delayed"


# Two events of one copy with the same timestamp: the graver one is kept, whatever their order.
GRAVITY = {
    Outcome.SENT: 0,
    Outcome.DELAYED: 1,
    Outcome.DELIVERED: 2,
    Outcome.REJECTED: 3,
    Outcome.BOUNCED: 4,
    Outcome.COMPLAINED: 5,
}


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    outcome: Outcome
    ses_message_id: str
    at: dt.datetime
    sent_at: dt.datetime | None
    # From the message tags the sender set; None when SES published none (identity notifications).
    outbox_id: int | None = None
    recipient_index: int | None = None
    # The recipients this event is about, lower-cased (one, for the copies we send).
    addresses: tuple[str, ...] = ()
    # "permanent/General", "transient/MailboxFull", "abuse", "TransientCommunicationFailure", ...
    detail: str | None = None
    bounce_type: str | None = None

    def __repr__(self) -> str:
        return f"DeliveryEvent({self.outcome.value}, outbox_id={self.outbox_id}, index={self.recipient_index})"
