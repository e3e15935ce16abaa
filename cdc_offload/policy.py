"""Which paired rows we may send, why the others are left to Moodle, and what AWS's answer to a
round makes of each row sent. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.errors import HeaderParseError
from email.headerregistry import Address

from cdc_offload.model import Delivery, Job, Reason, RecipientOutcome, RecipientStatus, Recorded, Resolution, Status
from cdc_offload.sinks import BREAKER_OPEN, DEADLINE, NO_ANSWER, NOT_ATTEMPTED, TOO_LARGE, UNREACHABLE
from cdc_offload.sinks.message import envelope

_UNAVAILABLE_CODES = frozenset({BREAKER_OPEN, DEADLINE, NOT_ATTEMPTED, UNREACHABLE})

_FORBIDDEN_IN_ADDRESS = frozenset(",;<>()[]\\\"' \t\r\n")
# The common case, ASCII dot-atoms on both sides, which the full parser below always accepts: it
# costs ~75 µs an address, a fifth of a 1,000-user round's work on the loop thread.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)


def is_single_address(text: str) -> bool:
    """One plain `local@domain` address, nothing that could smuggle a second one or a header."""
    if not text or len(text) > 254 or any(ch in _FORBIDDEN_IN_ADDRESS or ord(ch) < 32 for ch in text):
        return False
    local, sep, domain = text.rpartition("@")
    if not sep or not local or "@" in local or "." not in domain.strip("."):
        return False
    if _PLAIN_ADDRESS.fullmatch(text):
        return True
    try:
        Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError):
        return False
    return True


def decide(
    job: Job, now: float, max_event_age: float, templates: frozenset[str], clock_skew: float = 0.0
) -> Resolution | None:
    """A `Resolution` when the row is left to Moodle; None when it is ours to send.

    `job.event_time` is the outbox row's own commit time. `clock_skew` is how far the web
    servers', the database's and this host's clocks may disagree."""
    row = job.outbox
    reason = Reason.NONE
    status = Status.SKIPPED
    if row.templatename not in templates:
        reason = Reason.OTHER_TEMPLATE
    elif row.sent is not None:
        reason = Reason.ALREADY_SENT
    elif job.user is None:
        reason = Reason.NO_USER_INSERT
    elif job.user.deleted:
        reason = Reason.USER_DELETED
    elif job.user.suspended:
        reason = Reason.USER_SUSPENDED
    elif not is_single_address(job.user.email.strip()):
        reason = Reason.BAD_ADDRESS
    elif row.due > max(now, job.event_time) + clock_skew:
        # Scheduled only if `due` is later than both the row's commit and this host's now: a
        # clock a little behind the web server's (or the row read late) is not a schedule.
        reason = Reason.SCHEDULED
    elif job.event_time > now + clock_skew:
        # Stamped in our future: its age is unknown (a clock off, `SET TIMESTAMP`), and Moodle's
        # cron may be sending it already; a future stamp must not pass for a fresh row.
        status, reason = Status.STALE, Reason.CLOCK_SKEW
    elif now - job.event_time > max_event_age:
        status, reason = Status.STALE, Reason.TOO_OLD
    else:
        return None
    return Resolution(
        outbox_id=row.id,
        userid=row.userid,
        status=status,
        reason=reason,
        position=job.start.position,
        event_time=job.event_time,
    )


@dataclass(frozen=True, slots=True)
class Triage:
    """A round's rows sorted: left to Moodle now, to claim and send, claims a restart found, and
    those the ledger already has a final word on (dropped: a replay or restart sends none twice)."""

    decided: list[Resolution]
    fresh: list[Job]
    resumed: list[tuple[Job, Recorded]]
    done: frozenset[int]


def triage(
    jobs: Sequence[Job], recorded: Mapping[int, Recorded], now: float, max_event_age: float, rules: SendRules
) -> Triage:
    """Claims a restart found are resumed whatever their age (the outbox row is marked ours); the
    rest meet `decide`."""
    done = frozenset(outbox_id for outbox_id, entry in recorded.items() if entry.status != Status.CLAIMED)
    decided: list[Resolution] = []
    fresh: list[Job] = []
    resumed: list[tuple[Job, Recorded]] = []
    for job in jobs:
        entry = recorded.get(job.outbox.id)
        if job.outbox.id in done:
            continue
        if entry is not None:
            resumed.append((job, entry))
            continue
        decision = decide(job, now, max_event_age, rules.templates, rules.clock_skew)
        if decision is None:
            fresh.append(job)
        else:
            decided.append(decision)
    return Triage(decided, fresh, resumed, done)


@dataclass(frozen=True, slots=True)
class SendRules:
    templates: frozenset[str]
    clock_skew: float


def left_to_moodle(job: Job, status: Status, reason: Reason) -> Resolution:
    return Resolution(job.outbox.id, job.outbox.userid, status, reason, job.start.position, job.event_time)


def would_send(job: Job) -> Resolution:
    """What a dry run reports for a row it would hand to AWS."""
    return left_to_moodle(job, Status.OFFLOADED, Reason.NONE)


def resolve(
    sent: Sequence[Job], deliveries: Iterable[Delivery], marks: Mapping[int, int], sink: str
) -> list[Resolution]:
    """The final word on each row of a round, from AWS's answer: offloaded when accepted, else
    left to Moodle with the reason (uncertain when AWS may have it anyway). `marks` are the
    `sent` values our claim wrote, the guard of the row's delete or restore."""
    by_id = {d.outbox_id: d for d in deliveries}
    resolutions = []
    for job in sent:
        delivery = by_id.get(job.outbox.id)
        base = Resolution(
            job.outbox.id,
            job.outbox.userid,
            Status.OFFLOADED,
            Reason.NONE,
            job.start.position,
            job.event_time,
            sink=sink,
            attempts=1,
            claim_mark=marks.get(job.outbox.id),
        )
        if delivery is not None and delivery.accepted:
            # SQS carries every copy in one message: each copy is accepted with it.
            copies = delivery.recipients or tuple(
                RecipientOutcome(r, RecipientStatus.ACCEPTED, message_id=delivery.message_id)
                for r in envelope(job).recipients
            )
            resolutions.append(replace(base, message_id=delivery.message_id, recipients=copies))
        elif delivery is not None and delivery.error_code == NO_ANSWER:
            # Left to Moodle, but AWS may have it too: counted as the duplicate it may be.
            resolutions.append(replace(base, status=Status.UNCERTAIN, reason=Reason.NO_ANSWER))
        else:
            resolutions.append(replace(base, status=Status.FALLBACK, reason=_failure_reason(delivery)))
    return resolutions


def _failure_reason(delivery: Delivery | None) -> Reason:
    code = delivery.error_code if delivery is not None else None
    if code == TOO_LARGE:
        return Reason.TOO_LARGE
    if code in _UNAVAILABLE_CODES:
        return Reason.AWS_UNAVAILABLE
    return Reason.AWS_REJECTED
