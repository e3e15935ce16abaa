"""Every Prometheus family the sidecar exports, on one registry of its own.

Labelled series are created up front so a dashboard reads 0, not "no data". No label ever holds
a user id, an address or any row content: labels are from fixed sets (or AWS's error codes).
"""

from __future__ import annotations

import platform
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from cdc_offload import __version__
from cdc_offload.model import Reason, RecipientKind, RecipientStatus, Status

EVENT_TYPES = (
    "write_rows",
    "update_rows",
    "delete_rows",
    "table_map",
    "query",
    "xid",
    "gtid",
    "rotate",
    "heartbeat",
    "other",
)
WATCHED_TABLES = ("user", "outbox")
SINKS = ("sqs", "ses")
# The (status, reason) pairs that can occur; created at start so each reads 0.
OUTCOMES: tuple[tuple[Status, Reason], ...] = (
    (Status.OFFLOADED, Reason.NONE),
    (Status.RACED, Reason.SENT_BY_MOODLE),
    (Status.FALLBACK, Reason.AWS_REJECTED),
    (Status.FALLBACK, Reason.AWS_UNAVAILABLE),
    (Status.FALLBACK, Reason.TOO_LARGE),
    (Status.STALE, Reason.TOO_OLD),
    (Status.STALE, Reason.CLOCK_SKEW),
    (Status.UNCERTAIN, Reason.NO_ANSWER),
    (Status.DUPLICATE_OBSERVED, Reason.SENT_BY_MOODLE),
    *(
        (Status.SKIPPED, r)
        for r in (
            Reason.OTHER_TEMPLATE,
            Reason.ALREADY_SENT,
            Reason.SCHEDULED,
            Reason.USER_DELETED,
            Reason.USER_SUSPENDED,
            Reason.BAD_ADDRESS,
            Reason.NO_USER_INSERT,
            Reason.UNDECODABLE,
            Reason.BAD_HEADERS,
            Reason.ATTACHMENT,
            Reason.DIVERTED,
            Reason.NO_EMAIL_EVER,
            Reason.TEMPLATE_DISABLED,
            Reason.RECIPIENTS_UNKNOWN,
            Reason.DEPARTMENT_UNKNOWN,
        )
    ),
)
KNOWN_AWS_ERRORS = (
    "DeadlineExceeded",
    "NoAnswerByDeadline",
    "Unreachable",
    "MessageTooLarge",
    "BreakerOpen",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "LimitExceededException",
    "MessageRejected",
    "InternalError",
    "ServiceUnavailable",
    "AccessDenied",
    "DailyQuotaExceeded",
)
_BINLOG_INDEX = re.compile(r"\.(\d+)$")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` series double the exposition and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._declare_stream(r)
        self._declare_delivery(r)
        self._declare_position(r)
        self._preset_labels()

    def _declare_stream(self, r: CollectorRegistry) -> None:
        """What the binlog reader sees and how far behind it is."""
        self.build = Info("cdc_offload_build", "Version of the running sidecar.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        self.events = Counter(
            "cdc_offload_binlog_events_total", "Binlog events read, by event type.", ["type"], registry=r
        )
        self.rows = Counter(
            "cdc_offload_rows_seen_total", "Inserted rows seen on the watched tables.", ["table"], registry=r
        )
        self.undecodable = Counter(
            "cdc_offload_undecodable_rows_total",
            "Watched rows that could not be decoded and were left to Moodle.",
            ["table"],
            registry=r,
        )
        self.statement_format = Counter(
            "cdc_offload_statement_format_rows_total",
            "INSERTs on the watched tables written in statement format (not readable, left to Moodle).",
            ["table"],
            registry=r,
        )
        self.lag = Gauge(
            "cdc_offload_replication_lag_seconds",
            "Now minus the commit time of the last binlog event read (kept current by heartbeats when idle).",
            registry=r,
        )
        self.pending = Gauge(
            "cdc_offload_pending_rows", "Rows waiting for their partner in the pairing window.", registry=r
        )
        self.oldest_unresolved = Gauge(
            "cdc_offload_oldest_unresolved_age_seconds",
            "Age of the oldest row still waiting for its partner or for delivery (0 when none).",
            registry=r,
        )
        self.reader_restarts = Counter(
            "cdc_offload_reader_restarts_total", "Binlog reader rebuilds from the committed checkpoint.", registry=r
        )

    def _declare_delivery(self, r: CollectorRegistry) -> None:
        """What happens to outbox rows: their outcomes, AWS, the recipients, the Moodle task lock."""
        self.jobs = Counter(
            "cdc_offload_jobs_total", "Outbox rows resolved, by outcome and reason.", ["status", "reason"], registry=r
        )
        self.dispatch_seconds = Histogram(
            "cdc_offload_dispatch_seconds",
            "Time for one dispatch round to AWS (a batch of jobs), by sink.",
            ["sink"],
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.aws_errors = Counter(
            "cdc_offload_aws_errors_total", "Jobs AWS did not accept, by error code.", ["code"], registry=r
        )
        self.breaker_open = Gauge(
            "cdc_offload_aws_breaker_open", "1 while the circuit breaker holds calls to AWS back.", registry=r
        )
        self.ses_send_rate_unknown = Counter(
            "cdc_offload_ses_send_rate_unknown_total",
            "Starts where SES would not tell the send rate (GetAccount failed): paced at a conservative rate.",
            registry=r,
        )
        self.unsuppressed_at_exit = Counter(
            "cdc_offload_unsuppressed_at_exit_rows_total",
            "Rows AWS accepted whose suppression the primary refused until the process exited: Moodle sends them too.",
            registry=r,
        )
        self.recipients = Counter(
            "cdc_offload_recipients_total",
            "Copies of outbox rows handed to AWS, by recipient kind and outcome (accepted, failed, not_sent).",
            ["kind", "status"],
            registry=r,
        )
        self.task_lock_held = Histogram(
            "cdc_offload_moodle_lock_held_seconds",
            "How long one claim held the lock IOMAD's email task runs under (the most the task waits for us).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.task_lock_busy = Counter(
            "cdc_offload_moodle_lock_busy_total",
            "Claims put off because IOMAD's email task held its lock (it is sending; rows wait or go to it).",
            registry=r,
        )

    def _declare_position(self, r: CollectorRegistry) -> None:
        """The committed checkpoint, leadership and the primary."""
        self.checkpoint_file = Gauge(
            "cdc_offload_checkpoint_binlog_file_index",
            "Numeric suffix of the committed checkpoint's binlog file.",
            registry=r,
        )
        self.checkpoint_offset = Gauge(
            "cdc_offload_checkpoint_binlog_offset_bytes",
            "Offset of the committed checkpoint in its binlog file.",
            registry=r,
        )
        self.checkpoint_time = Gauge(
            "cdc_offload_checkpoint_last_commit_timestamp_seconds",
            "Unix time the checkpoint was last committed.",
            registry=r,
        )
        self.active = Gauge(
            "cdc_offload_active", "1 while this instance holds the consumer lock and processes the binlog.", registry=r
        )
        self.leadership_lost = Counter(
            "cdc_offload_leadership_lost_total",
            "Times this instance found it no longer held the consumer lock (and stood down).",
            registry=r,
        )
        self.writer_failures = Counter(
            "cdc_offload_writer_failures_total",
            "Commits on the primary that failed (connection lost, lock lost).",
            registry=r,
        )
        self.fail_closed = Gauge(
            "cdc_offload_fail_closed",
            "1 when the sidecar stopped itself because it could not go on safely (position lost, bad server settings).",
            registry=r,
        )

    def _preset_labels(self) -> None:
        # Every known label set is exported at 0 from the start: a dashboard panel and rate() see it.
        for event_type in EVENT_TYPES:
            self.events.labels(event_type)
        for table in WATCHED_TABLES:
            self.rows.labels(table)
            self.undecodable.labels(table)
            self.statement_format.labels(table)
        for status, reason in OUTCOMES:
            self.jobs.labels(status.value, reason.value)
        for sink in SINKS:
            self.dispatch_seconds.labels(sink)
        for kind in RecipientKind:
            for recipient_status in RecipientStatus:
                self.recipients.labels(kind.value, recipient_status.value)
        for code in KNOWN_AWS_ERRORS:
            self.aws_errors.labels(code)

    def set_checkpoint(self, binlog_file: str, offset: int, committed_at: float) -> None:
        match = _BINLOG_INDEX.search(binlog_file)
        self.checkpoint_file.set(int(match.group(1)) if match else 0)
        self.checkpoint_offset.set(offset)
        self.checkpoint_time.set(committed_at)
