"""Which paired rows we may send, and why the others are left to Moodle."""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address

from cdc_offload.model import Job, Reason, Resolution, Status

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
