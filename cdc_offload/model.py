"""Value types that cross module boundaries. All frozen: a stage never mutates another's data."""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

_T = TypeVar("_T")


def _pickled_by_fields(cls: type[_T]) -> type[_T]:
    """Pickle as a constructor call with the field values. What the binlog reader process sends
    the loop is these; the `__getstate__`/`__setstate__` a slots dataclass gets looks its fields up
    for every object, which made unpickling ~3x slower (10.6 against 3.6 µs an item here)."""
    values = operator.attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: _T) -> tuple[Callable[..., _T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls


@_pickled_by_fields
@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A binlog coordinate. `offset` is where the next event starts, so a position taken at a
    commit is a transaction boundary: resuming there re-reads nothing and skips nothing."""

    file: str
    offset: int

    def __str__(self) -> str:
        return f"{self.file}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        name, sep, offset = text.rpartition(":")
        if not sep or not name or not offset.isdigit():
            raise ValueError(f"{text!r} is not a binlog position: expected FILE:OFFSET, e.g. binlog.000012:4")
        return cls(name, int(offset))


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a restart resumes: a transaction boundary, with the GTID state there when known."""

    position: Position
    gtid: str | None = None
    # The server_id of the server whose binlog the position belongs to: a file/offset means
    # other rows on another server, so resuming there by position is refused.
    source_server_id: str | None = None


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    username: str
    firstname: str
    lastname: str
    email: str
    auth: str
    deleted: bool
    suspended: bool

    def __repr__(self) -> str:
        # Addresses and names stay out of logs and tracebacks.
        return f"UserRow(id={self.id})"


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    userid: int
    templatename: str | None
    sent: int | None
    due: int
    companyid: int
    subject: str = ""
    body: str = ""
    # IOMAD's PHP-serialized copy of the template (and To:/Cc:/reply-to: strings) frozen at queue
    # time: it decides who else receives the row. "" when NULL.
    headers: str = ""
    senderid: int | None = None

    def __repr__(self) -> str:
        # A stray log line or traceback showing this row must not carry the body (the password).
        return f"OutboxRow(id={self.id}, userid={self.userid}, templatename={self.templatename!r})"


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """An INSERT on a watched table. `start` is the boundary before its transaction: resuming
    there reads this row again."""

    row: UserRow | OutboxRow
    start: Checkpoint
    event_time: int


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Commit:
    """The end of a transaction: `position` is a safe place to resume."""

    checkpoint: Checkpoint
    event_time: int


@dataclass(frozen=True, slots=True)
class Idle:
    """The server had nothing to send (a heartbeat): the stream is caught up at wall time `now`."""

    now: float


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Undecodable:
    """A watched row we could not decode: left to Moodle, counted, never guessed at."""

    table: str
    start: Checkpoint
    event_time: int
    problem: str
    # Known when the row's id and user decoded: the ledger then records why it was left to Moodle.
    outbox_id: int | None = None
    userid: int | None = None
    # An INSERT written in statement format (a session with binlog_format=STATEMENT/MIXED): the
    # row itself is not in the binlog. Counted apart, as it means the server's setting changed.
    statement_format: bool = False


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class OutboxUpdate:
    """An UPDATE of a watched outbox row: IOMAD's task marking it sent, or our own claim/restore."""

    outbox_id: int
    userid: int
    sent_before: int | None
    sent_after: int | None
    start: Checkpoint
    event_time: int
    # Whether `modifiedtime` changed (IOMAD's task sets it when marking; we never do); None when
    # the outbox has no such column.
    modifiedtime_changed: bool | None = None


@dataclass(frozen=True, slots=True)
class EventCounts:
    """Binlog events read since the last report, by type (for the throughput metric)."""

    counts: tuple[tuple[str, int], ...]


SourceItem = ChangeEvent | Commit | Idle | Undecodable | EventCounts | OutboxUpdate


class Status(enum.StrEnum):
    OFFLOADED = "offloaded"
    RACED = "raced"
    FALLBACK = "fallback"
    SKIPPED = "skipped"
    STALE = "stale"
    # Claim-first: the outbox row is ours (hidden from IOMAD's task) and AWS has not answered yet.
    CLAIMED = "claimed"
    # AWS's answer never came (deadline, crash after dispatch): the row went back to Moodle, so
    # the user may get it twice. The only duplicate kind left, and counted.
    UNCERTAIN = "uncertain"
    # IOMAD's task marked a row we had delivered: it sent it too (seen in the binlog, mark-sent mode).
    DUPLICATE_OBSERVED = "duplicate_observed"


class Reason(enum.StrEnum):
    """Why a row was left to Moodle (or, for raced, what happened). Fixed set: metric labels."""

    NONE = "none"
    OTHER_TEMPLATE = "other_template"
    ALREADY_SENT = "already_sent"
    SCHEDULED = "scheduled"
    USER_DELETED = "user_deleted"
    USER_SUSPENDED = "user_suspended"
    BAD_ADDRESS = "bad_address"
    NO_USER_INSERT = "no_user_insert"
    TOO_OLD = "too_old"
    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    AWS_REJECTED = "aws_rejected"
    AWS_UNAVAILABLE = "aws_unavailable"
    SENT_BY_MOODLE = "sent_by_moodle"
    # Rows the sidecar cannot reproduce exactly as IOMAD's task would: left to Moodle whole.
    BAD_HEADERS = "bad_headers"
    ATTACHMENT = "attachment"
    DIVERTED = "divertallemailsto"
    NO_EMAIL_EVER = "noemailever"
    TEMPLATE_DISABLED = "template_disabled"
    RECIPIENTS_UNKNOWN = "recipients_unknown"
    DEPARTMENT_UNKNOWN = "department_unknown"
    # The row was claimed and AWS's answer is unknown (deadline, restart): restored for Moodle.
    NO_ANSWER = "no_answer"
    # The lock IOMAD's email task runs under was held (the task is running) past our wait.
    TASK_RUNNING = "task_running"
    # The row's timestamp is ahead of this host's clock by more than --clock-skew: its age is unknown.
    CLOCK_SKEW = "clock_skew"


class RecipientKind(enum.StrEnum):
    """Who a copy of an outbox row goes to, in the order IOMAD's task sends them."""

    USER = "user"
    EMAILTO = "emailto"
    EMAILCC = "emailcc"
    EMAILTOOTHER = "emailtoother"
    EMAILCCOTHER = "emailccother"
    MANAGER = "manager"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One copy of an outbox row: IOMAD sends every recipient a separate email."""

    index: int
    kind: RecipientKind
    address: str
    name: str = ""
    user_id: int | None = None

    def __repr__(self) -> str:
        # Addresses stay out of logs and tracebacks.
        return f"Recipient(index={self.index}, kind={self.kind.value}, user_id={self.user_id})"


@dataclass(frozen=True, slots=True)
class Sender:
    """From, FromName and Reply-To as IOMAD's task would set them. `address` None: the sink's
    configured no-reply address (`--from`), as IOMAD uses the site's."""

    address: str | None = None
    name: str = ""
    reply_to: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Sender(own_address={self.address is not None})"


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everyone who receives the row and who it comes from."""

    recipients: tuple[Recipient, ...]
    sender: Sender = Sender()


@dataclass(frozen=True, slots=True)
class Job:
    """An outbox row with the user it belongs to, ready to decide on and maybe send."""

    outbox: OutboxRow
    user: UserRow | None
    start: Checkpoint
    event_time: int
    # Filled in by the recipient look-up before dispatch; None means the user alone.
    envelope: Envelope | None = None


class RecipientStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    FAILED = "failed"
    # IOMAD's task stops a row's remaining copies after one failed send; so do we.
    NOT_SENT = "not_sent"


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """What AWS said about one copy of a row."""

    recipient: Recipient
    status: RecipientStatus
    message_id: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the sink says about one job. `accepted` is the row's fate: the user's copy (and, for
    SQS, the one message carrying every copy) was accepted, so the row must not go back to Moodle."""

    outbox_id: int
    accepted: bool
    message_id: str | None = None
    error_code: str | None = None
    recipients: tuple[RecipientOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolution:
    """The final word on one outbox row, as the ledger records it."""

    outbox_id: int
    userid: int
    status: Status
    reason: Reason
    position: Position
    event_time: int
    sink: str | None = None
    message_id: str | None = None
    attempts: int = 0
    recipients: tuple[RecipientOutcome, ...] = ()
    # The `sent` value our claim wrote (claim-first): the guard of the final delete or restore.
    claim_mark: int | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """One ledger row's word on an outbox row."""

    status: str
    claim_mark: int | None
    age_seconds: float


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim took: the `sent` mark it wrote, the rows it marked, and how long it held
    the email task's lock (IOMAD's task waits that long at most)."""

    mark: int
    outbox_ids: frozenset[int]
    held_seconds: float
