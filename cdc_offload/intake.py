"""What the reader handed over, taken in: rows paired by the correlator (jobs go to staging),
transaction boundaries to the checkpoint tracker, silences timed, events counted, undecodable
rows staged for Moodle, and outbox rows seen marked sent a second time noted."""

from __future__ import annotations

from collections.abc import Iterable

from cdc_offload import logs
from cdc_offload.checkpoints import CheckpointTracker
from cdc_offload.clock import Clock
from cdc_offload.correlate import Correlator
from cdc_offload.metrics import Metrics
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    Commit,
    EventCounts,
    Idle,
    OutboxRow,
    OutboxUpdate,
    Reason,
    Resolution,
    SourceItem,
    Status,
    Undecodable,
)
from cdc_offload.settings import Settings
from cdc_offload.staging import Staging


class Intake:
    def __init__(
        self, settings: Settings, staging: Staging, tracker: CheckpointTracker, metrics: Metrics, clock: Clock
    ) -> None:
        self._user_table = settings.tables.user_table
        self._staging = staging
        self._tracker = tracker
        self._metrics = metrics
        self._clock = clock
        self.correlator = Correlator(settings.pair_window, settings.templates, settings.pair_window_bytes)
        # The binlog time of the newest event (None while the server only sends heartbeats).
        self.last_event_time: float | None = None
        # Monotonic time the server's heartbeats began (None while the stream moves).
        self._silent_since: float | None = None
        # Outbox rows seen re-marked sent in the binlog, checked against the ledger at the next step.
        self.remarked: set[int] = set()

    def take(self, items: Iterable[SourceItem]) -> None:
        for item in items:
            if isinstance(item, ChangeEvent):
                self._metrics.rows.labels("outbox" if isinstance(item.row, OutboxRow) else "user").inc()
                self.last_event_time = item.event_time
                self._staging.add_ready(self.correlator.add(item))
            elif isinstance(item, Commit):
                self._tracker.boundary(item.checkpoint)
                self.last_event_time = item.event_time
                self._silent_since = None
                self._staging.add_ready(self.correlator.advance(item.event_time, item.checkpoint.position))
            elif isinstance(item, Idle):
                self._idle()
            elif isinstance(item, EventCounts):
                for kind, count in item.counts:
                    self._metrics.events.labels(kind).inc(count)
            elif isinstance(item, Undecodable):
                self._undecodable(item)
            elif isinstance(item, OutboxUpdate) and remarks_a_sent_row(item):
                self.remarked.add(item.outbox_id)

    def expire_all(self) -> None:
        """The end of a replayed stretch: rows still waiting for their partner are Moodle's."""
        self._staging.add_ready(self.correlator.expire_all())

    def holds(self) -> Iterable[Checkpoint]:
        oldest_waiting = self.correlator.oldest_start()
        return () if oldest_waiting is None else (oldest_waiting,)

    def observe(self, now: float) -> None:
        """`now`: this host's wall clock (the lag is binlog time against it)."""
        last = self.last_event_time
        self._metrics.lag.set(0.0 if last is None else max(0.0, now - last))
        self._metrics.oldest_unresolved.set(self.correlator.oldest_wait() or 0.0)
        self._metrics.pending.set(self.correlator.pending_count())

    def _idle(self) -> None:
        """A heartbeat: the server has nothing more. Silence is measured as a duration here, never
        as this host's clock against binlog timestamps (the two need not agree)."""
        self.last_event_time = None
        now = self._clock.monotonic()
        if self._silent_since is None:
            self._silent_since = now
        self._staging.add_ready(self.correlator.advance_idle(now - self._silent_since))

    def _undecodable(self, item: Undecodable) -> None:
        table = "user" if item.table == self._user_table else "outbox"
        counter = self._metrics.statement_format if item.statement_format else self._metrics.undecodable
        counter.labels(table).inc()
        if item.outbox_id is not None:
            start, userid = item.start.position, item.userid or 0
            resolution = Resolution(item.outbox_id, userid, Status.SKIPPED, Reason.UNDECODABLE, start, item.event_time)
            self._staging.add_unusable(resolution, item.start)
        logs.warning("row_undecodable", table=item.table, position=str(item.start.position), problem=item.problem)


def remarks_a_sent_row(update: OutboxUpdate) -> bool:
    """A row already marked sent, marked again: IOMAD's task marking a row it loaded before our
    claim, after sending it too. (Our own claim and restore go from and to NULL, and never touch
    `modifiedtime`; the task's mark can fall in the same second as our claim.)"""
    if update.sent_before is None or update.sent_after is None:
        return False
    return bool(update.modifiedtime_changed) or update.sent_after != update.sent_before
