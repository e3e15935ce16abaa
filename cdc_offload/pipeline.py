"""The one loop: leadership, then source → correlate → decide → dispatch → store, until stopped.

The reader runs in its own thread (a blocking socket read) and hands items over a bounded
queue; everything else happens on this loop's thread, so the correlator, the checkpoint and the
writer connection have a single owner. AWS answers on round threads: up to ROUNDS_IN_FLIGHT
rounds are with AWS while this loop reads on, and they are committed here, oldest first. The
checkpoint never passes a row of a round that is not committed yet.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import random
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Protocol

from cdc_offload import logs
from cdc_offload.correlate import Correlator
from cdc_offload.dispatch import ROUNDS_IN_FLIGHT, Dispatcher
from cdc_offload.errors import FailClosed, PositionLost, ReplicaUnreachable, ShutdownIncomplete, SourceError
from cdc_offload.health import Health
from cdc_offload.metrics import Metrics
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    Commit,
    Delivery,
    Envelope,
    EventCounts,
    Idle,
    Job,
    OutboxRow,
    OutboxUpdate,
    Position,
    Reason,
    RecipientOutcome,
    RecipientStatus,
    Resolution,
    SourceItem,
    Status,
    Undecodable,
)
from cdc_offload.policy import decide
from cdc_offload.settings import Settings
from cdc_offload.sinks import BREAKER_OPEN, DEADLINE, NO_ANSWER, NOT_ATTEMPTED, TOO_LARGE, UNREACHABLE
from cdc_offload.sinks.message import envelope
from cdc_offload.store import Claimed, LeadershipLost, Recorded, Store, StoreError

CRASH_ENV = "CDC_OFFLOAD_CRASH_AT"
PAUSE_ENV = "CDC_OFFLOAD_PAUSE_AT"
_UNAVAILABLE_CODES = frozenset({BREAKER_OPEN, DEADLINE, NOT_ATTEMPTED, UNREACHABLE})
# SQS FIFO drops a resend with the same deduplication id for five minutes: a row claimed before a
# crash is sent again within this margin of it (a no-op if AWS had it), else restored for Moodle.
FIFO_DEDUP_SECONDS = 270.0
# How often rows waiting for their user's department are looked up again.
DEFER_RETRY_SECONDS = 0.2
# After IOMAD's task held its lock past --moodle-lock-wait, how long before a claim is tried again.
CLAIM_PAUSE_SECONDS = 0.5


def crash_point(name: str) -> None:
    """Fault-injection hook: die here, as abruptly as a power cut, when the tests ask for it
    (CDC_OFFLOAD_CRASH_AT), or freeze here as a stalled VM would (CDC_OFFLOAD_PAUSE_AT: SIGSTOP
    to ourselves; whoever sends SIGCONT lets this instance go on from exactly this point)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


class Source(Protocol):
    def __iter__(self) -> Iterator[SourceItem]: ...

    def close(self) -> None: ...


SourceFactory = Callable[[Settings, Checkpoint], Source]


class RecipientResolver(Protocol):
    """Who else receives each row (IOMAD's task's rules): an `Envelope`, a `Reason` to leave the
    row to Moodle, or anything else for "not knowable yet, ask again in a later round"."""

    def resolve(self, jobs: Sequence[Job]) -> Mapping[int, object]: ...

    def close(self) -> None: ...


class UserAlone:
    """The user as the only recipient: for sites without IOMAD's tables (core Moodle outboxes)."""

    def resolve(self, jobs: Sequence[Job]) -> Mapping[int, object]:
        return {job.outbox.id: envelope(job) for job in jobs}

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _ReaderEnded:
    error: SourceError | None


@dataclass(frozen=True, slots=True)
class _RoundAnswered:
    """Wakes the loop when AWS has answered a round, so its commit does not wait for a timeout."""


_ROUND_ANSWERED = _RoundAnswered()
_Handover = list[SourceItem] | _ReaderEnded | _RoundAnswered


@dataclass(frozen=True, slots=True)
class _Round:
    """A dispatch round handed to AWS and not committed yet."""

    number: int
    to_send: list[Job]
    # Left to Moodle (skipped, undecodable): recorded in the same commit.
    decided: list[Resolution]
    # Where its rows start: the checkpoint may not pass them until the round is committed.
    holds: list[Checkpoint]
    deliveries: Future[list[Delivery]] | None
    # The `sent` mark each sent row carries in the outbox (claim-first), by outbox id.
    marks: dict[int, int] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.deliveries is None or self.deliveries.done()

    @property
    def outbox_ids(self) -> set[int]:
        return {job.outbox.id for job in self.to_send} | {r.outbox_id for r in self.decided}


@dataclass
class RunOptions:
    """What differs between the live loop and a replay of a stretch of binlog."""

    write_checkpoint: bool = True
    dry_run: bool = False
    ignore_age: bool = False
    stop_at_end: bool = False
    on_progress: Callable[[Position], None] | None = None


@dataclass
class Tally:
    """Outcomes of one run (the demo and `replay` print it)."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    already_done: int = 0

    def add(self, resolutions: Iterable[Resolution]) -> None:
        for r in resolutions:
            self.outcomes[(r.status.value, r.reason.value)] += 1


class _Reader(threading.Thread):
    """Runs the blocking source and hands items over in chunks (one queue hop per chunk, not per
    event). Commits of transactions without watched rows are coalesced: only the newest matters."""

    CHUNK = 256
    COALESCE_SECONDS = 0.05

    def __init__(self, source: Source, out: queue.Queue[_Handover], health: Health) -> None:
        super().__init__(name="binlog-reader", daemon=True)
        self._source = source
        self._out = out
        self._health = health
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._source.close()

    def run(self) -> None:
        chunk: list[SourceItem] = []
        held_commit: Commit | None = None
        watched_in_txn = False
        last_put = time.monotonic()
        try:
            for item in self._source:
                if self._stopping.is_set():
                    return
                self._health.reader_alive()
                if isinstance(item, Commit):
                    # While the loop has not taken the last chunk (a dispatch round is with AWS),
                    # grow this one instead of queueing many small ones: the queue is bounded in
                    # chunks, and one chunk per transaction would cap a slow round at 64 of them.
                    busy = not self._out.empty()
                    if watched_in_txn:
                        chunk.append(item)
                        watched_in_txn = False
                        if busy and len(chunk) < self.CHUNK:
                            continue
                    else:
                        held_commit = item
                        recent = time.monotonic() - last_put < self.COALESCE_SECONDS
                        if (busy or recent) and len(chunk) < self.CHUNK:
                            continue
                        chunk.append(item)
                    held_commit = None
                elif isinstance(item, EventCounts):
                    chunk.append(item)
                    continue
                elif isinstance(item, Idle):
                    if held_commit is not None:
                        chunk.append(held_commit)
                        held_commit = None
                    chunk.append(item)
                else:
                    if held_commit is not None:
                        chunk.append(held_commit)
                        held_commit = None
                    watched_in_txn = True
                    chunk.append(item)
                    if len(chunk) < self.CHUNK:
                        continue
                self._put(chunk)
                chunk = []
                last_put = time.monotonic()
            if held_commit is not None:
                chunk.append(held_commit)
            if chunk:
                self._put(chunk)
            self._put(_ReaderEnded(None))
        except SourceError as error:
            self._put(_ReaderEnded(error))
        except Exception as error:  # noqa: BLE001 - any reader failure means: rebuild from the checkpoint
            self._put(_ReaderEnded(SourceError(f"binlog reader failed: {type(error).__name__}")))
        finally:
            self._health.reader_lost()

    def _put(self, item: list[SourceItem] | _ReaderEnded) -> None:
        # A full queue is back-pressure; a stopped session no longer drains it, so give up then.
        while not self._stopping.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


class Session:
    """One pass over the binlog from a committed checkpoint, as the active consumer."""

    HOLD_SECONDS = 0.1

    def __init__(
        self,
        settings: Settings,
        store: Store,
        dispatcher: Dispatcher,
        metrics: Metrics,
        health: Health,
        source: Source,
        start: Checkpoint,
        options: RunOptions,
        tally: Tally,
        clock: Callable[[], float] = time.time,
        recipients: RecipientResolver | None = None,
    ) -> None:
        self._settings = settings
        self._recipients = recipients or UserAlone()
        self._fifo = settings.sink.kind == "sqs" and (settings.sink.queue_url or "").endswith(".fifo")
        # Jobs whose user's department is not on the replica yet, looked up again every
        # DEFER_RETRY_SECONDS for at most the pair window; they hold the checkpoint meanwhile.
        self._deferred: dict[int, Job] = {}
        self._deferred_since: dict[int, float] = {}
        self._deferred_retry_at = 0.0
        # While IOMAD's email task holds its lock, no claim is tried before this (monotonic) time.
        self._claims_paused_until = 0.0
        # Outbox rows seen re-marked sent in the binlog, checked against the ledger at the next step.
        self._remarked: set[int] = set()
        # Set when the recipient look-up lost the replica: the loop ends as if the reader had.
        self._replica_lost: ReplicaUnreachable | None = None
        self._store = store
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._health = health
        self._options = options
        self._tally = tally
        self._clock = clock
        self._correlator = Correlator(settings.pair_window, settings.templates, settings.pair_window_bytes)
        # Monotonic time the server's heartbeats began (None while the stream moves).
        self._silent_since: float | None = None
        self._queue: queue.Queue[_Handover] = queue.Queue(maxsize=64)
        self._reader = _Reader(source, self._queue, health)
        self._ready: dict[int, Job] = {}
        # Outbox rows that could not be decoded (left to Moodle), recorded with the next commit.
        self._unusable: dict[int, Resolution] = {}
        self._unusable_starts: dict[int, Checkpoint] = {}
        # Where the rows of the round being started begin, while they are in neither the ready
        # set nor a round: a commit made meanwhile must not pass them.
        self._starting: list[Checkpoint] = []
        self._in_flight: deque[_Round] = deque()
        self._rounds = itertools.count(1)
        self._start = start
        self._last_commit = start
        self._committed = start
        self._committed_at = time.monotonic()
        self._last_event_time: float | None = None
        self.uncommitted: list[Resolution] = []

    def run(self, stop: threading.Event) -> None:
        """Returns when `stop` is set (after draining) or, in a replay, at the end of the stretch.
        Raises `SourceError` when the reader fails: the caller rebuilds it from the checkpoint."""
        self._reader.start()
        try:
            self._loop(stop)
        except StoreError:
            # Whatever failed (a commit, the ledger check, the lease), rounds still with AWS may
            # be accepted: their suppressions are retried with the rest, never sent again.
            while self._in_flight:
                round_ = self._in_flight.popleft()
                self.uncommitted = self.uncommitted + round_.decided + self._resolve(round_)
            raise
        finally:
            self._reader.stop()

    def _loop(self, stop: threading.Event) -> None:
        ended: _ReaderEnded | None = None
        round_size = max(1, min(self._settings.max_batch, self._dispatcher.round_limit))
        ready_since = 0.0
        while ended is None:
            self._health.loop_ticked()
            try:
                # Short waits while jobs are held for a fuller round (see below).
                got: _Handover | None = self._queue.get(timeout=0.01 if self._ready else 0.2)
            except queue.Empty:
                got = None
            while got is not None and not isinstance(got, _ReaderEnded):
                if isinstance(got, list):
                    self._take(got)
                    if len(self._ready) >= self._settings.max_batch:
                        break
                try:
                    got = self._queue.get_nowait()
                except queue.Empty:
                    got = None
            if isinstance(got, _ReaderEnded):
                ended = got
            if stop.is_set():
                break
            self._note_duplicates()
            self._commit_answered_rounds()
            self._retry_deferred()
            if not self._ready:
                ready_since = time.monotonic()
            if self._should_flush(round_size, time.monotonic() - ready_since):
                self._dispatch_ready(round_size)
            elif time.monotonic() - self._committed_at >= self._settings.checkpoint_interval:
                self._commit_checkpoint()
            self._observe()
            if self._replica_lost is not None:
                ended = _ReaderEnded(self._replica_lost)
        # Draining: what is paired is sent and recorded; what still waits for its partner is
        # re-read after a restart (the checkpoint stays before it).
        if self._options.stop_at_end or stop.is_set():
            self._expire(self._correlator.expire_all() if self._options.stop_at_end else [])
        self._flush()
        self._commit_checkpoint()
        if ended is not None and ended.error is not None:
            raise ended.error

    def _should_flush(self, round_size: int, held: float) -> bool:
        """Send now, or hold the ready jobs a moment for a fuller round?

        Caught up (a trickle), a job goes out as soon as the reader has nothing more: latency is
        what matters. Catching up on a backlog (the last event is over a second old) while a
        round is with AWS, a round of a few jobs would take a round slot for a whole AWS round
        trip; they are held until a round is full or for at most HOLD_SECONDS, well inside the
        freshness limit. With every slot taken, the ready jobs wait for the oldest answer."""
        if not (self._ready or self._unusable) or self._claims_paused():
            return False
        room = self._room(round_size)
        if len(self._in_flight) >= ROUNDS_IN_FLIGHT or room <= 0:
            return False
        if len(self._ready) >= room:
            return True
        if not self._queue.empty():
            return False
        if not self._in_flight:
            return True
        behind = self._last_event_time is not None and self._clock() - self._last_event_time > 1.0
        return not behind or held >= self.HOLD_SECONDS

    # -- items ------------------------------------------------------------------------------
    def _take(self, items: list[SourceItem]) -> None:
        for item in items:
            if isinstance(item, ChangeEvent):
                self._metrics.rows.labels("outbox" if isinstance(item.row, OutboxRow) else "user").inc()
                self._last_event_time = item.event_time
                for job in self._correlator.add(item):
                    self._ready[job.outbox.id] = job
            elif isinstance(item, Commit):
                self._last_commit = item.checkpoint
                if self._options.on_progress is not None:
                    self._options.on_progress(item.checkpoint.position)
                self._last_event_time = item.event_time
                self._silent_since = None
                self._expire(self._correlator.advance(item.event_time, item.checkpoint.position))
            elif isinstance(item, Idle):
                self._idle()
            elif isinstance(item, EventCounts):
                for kind, count in item.counts:
                    self._metrics.events.labels(kind).inc(count)
            elif isinstance(item, Undecodable):
                table = "user" if item.table == self._settings.tables.user_table else "outbox"
                counter = self._metrics.statement_format if item.statement_format else self._metrics.undecodable
                counter.labels(table).inc()
                if item.outbox_id is not None:
                    self._unusable[item.outbox_id] = Resolution(
                        item.outbox_id,
                        item.userid or 0,
                        Status.SKIPPED,
                        Reason.UNDECODABLE,
                        item.start.position,
                        item.event_time,
                    )
                    self._unusable_starts[item.outbox_id] = item.start
                logs.warning(
                    "row_undecodable", table=item.table, position=str(item.start.position), problem=item.problem
                )
            elif isinstance(item, OutboxUpdate) and self._remarks_a_sent_row(item):
                self._remarked.add(item.outbox_id)

    @staticmethod
    def _remarks_a_sent_row(update: OutboxUpdate) -> bool:
        """A row already marked sent, marked again: IOMAD's task marking a row it loaded before our
        claim, after sending it too. (Our own claim and restore go from and to NULL, and never touch
        `modifiedtime`; the task's mark can fall in the same second as our claim.)"""
        if update.sent_before is None or update.sent_after is None:
            return False
        return bool(update.modifiedtime_changed) or update.sent_after != update.sent_before

    def _idle(self) -> None:
        """A heartbeat: the server has nothing more. Silence is measured as a duration here, never
        as this host's clock against binlog timestamps (the two need not agree)."""
        self._last_event_time = None
        now = time.monotonic()
        if self._silent_since is None:
            self._silent_since = now
        self._expire(self._correlator.advance_idle(now - self._silent_since))

    def _expire(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._ready[job.outbox.id] = job

    # -- rounds -----------------------------------------------------------------------------
    def _flush(self) -> None:
        """Send everything ready and commit every round: nothing is left with AWS uncommitted."""
        size = max(1, min(self._settings.max_batch, self._dispatcher.round_limit))
        while (self._ready or self._unusable) and not self._claims_paused():
            room = self._room(size)
            if len(self._in_flight) >= ROUNDS_IN_FLIGHT or (self._ready and room <= 0):
                self._commit_oldest_round()
                continue
            self._start_round(self._take_round(max(0, room)))
        while self._in_flight:
            self._commit_oldest_round()

    def _dispatch_ready(self, size: int) -> None:
        # In rounds no larger than AWS can take within one deadline (SES is rate-limited), so a
        # 5,000-user transaction is not one round whose tail misses the deadline.
        while (self._ready or self._unusable) and len(self._in_flight) < ROUNDS_IN_FLIGHT and not self._claims_paused():
            room = self._room(size)
            if self._ready and room <= 0:
                return
            self._start_round(self._take_round(max(0, room)))

    def _room(self, size: int) -> int:
        """Jobs the next round may take: rounds with AWS at the same time share the sink's calls,
        so together they stay within what it can answer inside one deadline."""
        return size - sum(len(round_.to_send) for round_ in self._in_flight)

    def _take_round(self, size: int) -> list[Job]:
        round_ids = list(itertools.islice(self._ready, size))
        return [self._ready.pop(outbox_id) for outbox_id in round_ids]

    def _commit_answered_rounds(self) -> None:
        while self._in_flight and self._in_flight[0].answered:
            self._commit_oldest_round()

    def _start_round(self, jobs: list[Job]) -> None:
        unusable = list(self._unusable.values())
        holds = [job.start for job in jobs] + list(self._unusable_starts.values())
        self._starting = holds
        try:
            self._unusable.clear()
            self._unusable_starts.clear()
            self._start_round_of(jobs, unusable, holds)
        finally:
            self._starting = []

    def _start_round_of(self, jobs: list[Job], unusable: list[Resolution], holds: list[Checkpoint]) -> None:
        ids = [job.outbox.id for job in jobs] + [r.outbox_id for r in unusable]
        if any(not round_.outbox_ids.isdisjoint(ids) for round_ in self._in_flight):
            # The same outbox row again (a re-INSERT) while its first image is with AWS: let that
            # round's ledger row answer whether it was handled.
            while self._in_flight:
                self._commit_oldest_round()
        recorded = self._store.recorded(ids)
        done = {outbox_id for outbox_id, entry in recorded.items() if entry.status != Status.CLAIMED}
        if done:
            self._tally.already_done += len(done)
            logs.debug("already_handled", count=len(done))
            jobs = [job for job in jobs if job.outbox.id not in done]
        now = self._clock()
        max_age = float("inf") if self._options.ignore_age else self._settings.max_event_age
        resolutions: list[Resolution] = [r for r in unusable if r.outbox_id not in done]
        fresh: list[Job] = []
        resumed: list[tuple[Job, Recorded]] = []
        for job in jobs:
            entry = recorded.get(job.outbox.id)
            if entry is not None:
                # Claimed before a restart: resumed whatever its age (the outbox row is marked ours).
                resumed.append((job, entry))
                continue
            decision = decide(job, now, max_age, self._settings.templates, self._settings.clock_skew)
            if decision is None:
                fresh.append(job)
            else:
                resolutions.append(decision)
        if self._options.dry_run:
            resolutions += [self._would_send(job) for job in fresh]
            self._tally.add(resolutions)
            return
        to_send, marks, settled = self._claim_round(fresh, resumed)
        resolutions += settled
        number = next(self._rounds)
        deliveries = None
        if to_send:
            # The window where a crash leaves rows claimed (counted by the fault tests from these lines).
            logs.info("batch_dispatching", jobs=len(to_send), round=number)
            deliveries = self._dispatcher.submit(to_send)
            deliveries.add_done_callback(self._round_answered)
        self._in_flight.append(_Round(number, to_send, resolutions, holds, deliveries, marks))

    def _claim_round(
        self, fresh: list[Job], resumed: list[tuple[Job, Recorded]]
    ) -> tuple[list[Job], dict[int, int], list[Resolution]]:
        """Who receives each row, then the claim: the rows AWS gets, the mark each carries in the
        outbox, and the rows settled on the way (left to Moodle, raced, claims that cannot resume)."""
        settled: list[Resolution] = []
        # A claim a restart found is sent again only where the FIFO queue would drop a second copy;
        # the others go back to Moodle, so only the former need their recipients looked up.
        resendable = [
            (job, entry.claim_mark)
            for job, entry in resumed
            if self._fifo and entry.claim_mark is not None and entry.age_seconds < FIFO_DEDUP_SECONDS
        ]
        looked_up = [*fresh, *(job for job, _ in resendable)]
        try:
            answers = self._recipients.resolve(looked_up) if looked_up else {}
        except ReplicaUnreachable as error:
            # Like a cut binlog link: nothing is claimed, the rows stay ready (holding the
            # checkpoint), the loop drains what AWS has and the session is rebuilt.
            self._ready.update((job.outbox.id, job) for job in [*fresh, *(job for job, _ in resumed)])
            self._replica_lost = error
            return [], {}, settled
        addressed: list[Job] = []
        for job in fresh:
            answer = answers.get(job.outbox.id)
            if isinstance(answer, Envelope):
                self._deferred_since.pop(job.outbox.id, None)
                addressed.append(replace(job, envelope=answer))
            elif isinstance(answer, Reason):
                self._deferred_since.pop(job.outbox.id, None)
                settled.append(self._left_to_moodle(job, Status.SKIPPED, answer))
            else:
                settled.extend(self._defer(job))
        to_send: list[Job] = []
        marks: dict[int, int] = {}
        for job, mark in resendable:
            answer = answers.get(job.outbox.id)
            if isinstance(answer, Envelope):
                # The FIFO queue drops it if the first send got through: at most once either way.
                to_send.append(replace(job, envelope=answer))
                marks[job.outbox.id] = mark
        for job, entry in resumed:
            if job.outbox.id not in marks:
                # AWS may or may not have it: Moodle sends it (the one duplicate kind left, counted).
                settled.append(
                    replace(self._left_to_moodle(job, Status.UNCERTAIN, Reason.NO_ANSWER), claim_mark=entry.claim_mark)
                )
        if addressed:
            claimed = self._claim(addressed)
            if claimed is None:
                for job in addressed:
                    self._ready[job.outbox.id] = job
            else:
                for job in addressed:
                    if job.outbox.id in claimed.outbox_ids:
                        to_send.append(job)
                        marks[job.outbox.id] = claimed.mark
                    else:
                        settled.append(self._left_to_moodle(job, Status.RACED, Reason.SENT_BY_MOODLE))
        return to_send, marks, settled

    def _claim(self, jobs: list[Job]) -> Claimed | None:
        task_lock = self._settings.moodle_task_lock
        claims = [
            Resolution(
                job.outbox.id,
                job.outbox.userid,
                Status.CLAIMED,
                Reason.NONE,
                job.start.position,
                job.event_time,
                sink=self._dispatcher.sink_name,
            )
            for job in jobs
        ]
        claimed = self._store.claim(claims, task_lock, self._settings.moodle_lock_wait)
        if claimed is None:
            # IOMAD's task is sending: its rows are its own; ours wait (holding the checkpoint)
            # until it is done, and the claim's `sent IS NULL` guard then sorts out which are left.
            self._metrics.task_lock_busy.inc()
            self._claims_paused_until = time.monotonic() + CLAIM_PAUSE_SECONDS
            logs.info("email_task_running", rows=len(jobs))
            return None
        if task_lock is not None:
            self._metrics.task_lock_held.observe(claimed.held_seconds)
        crash_point("after_claim")
        return claimed

    def _note_duplicates(self) -> None:
        if not self._remarked or self._options.dry_run:
            return
        ours, pending = self._store.note_duplicates(sorted(self._remarked))
        self._remarked = set(pending)
        if ours:
            self._metrics.jobs.labels(Status.DUPLICATE_OBSERVED.value, Reason.SENT_BY_MOODLE.value).inc(len(ours))
            for outbox_id in ours:
                logs.warning("duplicate_observed", outbox_id=outbox_id, by="iomad_email_task")

    def _claims_paused(self) -> bool:
        return self._replica_lost is not None or time.monotonic() < self._claims_paused_until

    def _defer(self, job: Job) -> list[Resolution]:
        since = self._deferred_since.setdefault(job.outbox.id, time.monotonic())
        if time.monotonic() - since > self._settings.pair_window:
            del self._deferred_since[job.outbox.id]
            return [self._left_to_moodle(job, Status.SKIPPED, Reason.DEPARTMENT_UNKNOWN)]
        self._deferred[job.outbox.id] = job
        return []

    def _retry_deferred(self) -> None:
        if self._deferred and time.monotonic() >= self._deferred_retry_at:
            self._deferred_retry_at = time.monotonic() + DEFER_RETRY_SECONDS
            self._ready.update(self._deferred)
            self._deferred.clear()

    @staticmethod
    def _left_to_moodle(job: Job, status: Status, reason: Reason) -> Resolution:
        return Resolution(job.outbox.id, job.outbox.userid, status, reason, job.start.position, job.event_time)

    def _round_answered(self, _: Future[list[Delivery]]) -> None:
        # A full queue needs no wake-up: the loop looks at the answered rounds once it has taken it.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_ROUND_ANSWERED)

    def _commit_oldest_round(self) -> None:
        round_ = self._in_flight[0]
        resolutions = round_.decided + self._resolve(round_)
        self._in_flight.popleft()
        crash_point("before_commit")
        final = self._commit(resolutions)
        crash_point("after_commit")
        if round_.to_send:
            logs.info(
                "batch_committed",
                jobs=len(final),
                offloaded=sum(1 for r in final if r.status is Status.OFFLOADED),
                round=round_.number,
            )
        self._tally.add(final)
        for r in final:
            self._metrics.jobs.labels(r.status.value, r.reason.value).inc()
            for copy in r.recipients:
                self._metrics.recipients.labels(copy.recipient.kind.value, copy.status.value).inc()
            logs.info(
                "outbox_row_resolved",
                outbox_id=r.outbox_id,
                user_id=r.userid,
                status=r.status.value,
                reason=r.reason.value,
                position=str(r.position),
                message_id=r.message_id,
            )

    def _would_send(self, job: Job) -> Resolution:
        return Resolution(
            job.outbox.id, job.outbox.userid, Status.OFFLOADED, Reason.NONE, job.start.position, job.event_time
        )

    def _resolve(self, round_: _Round) -> list[Resolution]:
        """Waits for AWS's answer to the round (each call is bounded by the sink's deadline)."""
        if round_.deliveries is None:
            return []
        deliveries = {d.outbox_id: d for d in round_.deliveries.result()}
        crash_point("after_dispatch")
        resolutions = []
        for job in round_.to_send:
            delivery = deliveries.get(job.outbox.id)
            base = Resolution(
                job.outbox.id,
                job.outbox.userid,
                Status.OFFLOADED,
                Reason.NONE,
                job.start.position,
                job.event_time,
                sink=self._dispatcher.sink_name,
                attempts=1,
                claim_mark=round_.marks.get(job.outbox.id),
            )
            if delivery is not None and delivery.accepted:
                # SQS carries every copy in one message: each copy is accepted with it.
                copies = delivery.recipients or tuple(
                    RecipientOutcome(r, RecipientStatus.ACCEPTED, message_id=delivery.message_id)
                    for r in envelope(job).recipients
                )
                resolutions.append(replace(base, message_id=delivery.message_id, recipients=copies))
                continue
            code = delivery.error_code if delivery else None
            if code == NO_ANSWER:
                # Left to Moodle, but AWS may have it too: counted as the duplicate it may be.
                resolutions.append(replace(base, status=Status.UNCERTAIN, reason=Reason.NO_ANSWER))
                continue
            reason = (
                Reason.TOO_LARGE
                if code == TOO_LARGE
                else Reason.AWS_UNAVAILABLE
                if code in _UNAVAILABLE_CODES
                else Reason.AWS_REJECTED
            )
            resolutions.append(replace(base, status=Status.FALLBACK, reason=reason))
        return resolutions

    def _safe_checkpoint(self) -> Checkpoint | None:
        """The newest boundary that is not past any row still unresolved: one waiting for its
        partner, or a paired job not yet sent (Maxwell's rule)."""
        if not self._options.write_checkpoint:
            return None
        candidates = [self._last_commit]
        oldest_waiting = self._correlator.oldest_start()
        if oldest_waiting is not None:
            candidates.append(oldest_waiting)
        candidates.extend(job.start for job in self._ready.values())
        candidates.extend(self._unusable_starts.values())
        candidates.extend(job.start for job in self._deferred.values())
        candidates.extend(self._starting)
        for round_ in self._in_flight:
            candidates.extend(round_.holds)
        return min(candidates, key=lambda c: c.position)

    def _commit(self, resolutions: list[Resolution]) -> list[Resolution]:
        checkpoint = self._safe_checkpoint()
        # Kept until the commit succeeds: if the primary is lost now, the leader loop commits
        # these first when it is back, so AWS-accepted rows are still suppressed exactly once.
        self.uncommitted = resolutions
        final = self._store.commit(resolutions, checkpoint)
        self.uncommitted = []
        self._note_committed(checkpoint)
        return final

    def _commit_checkpoint(self) -> None:
        checkpoint = self._safe_checkpoint()
        if checkpoint is None or self._options.dry_run:
            return
        if checkpoint == self._committed:
            self._committed_at = time.monotonic()
            if time.monotonic() - self._store.last_used >= self._settings.lease_seconds / 3:
                # Idle: keep the lease alive, and find out now (not at the next batch) if it was lost.
                self._store.ensure_leader()
            return
        self._store.commit([], checkpoint)
        self._note_committed(checkpoint)

    @property
    def progressed(self) -> bool:
        """Whether this session moved the checkpoint (a reader that works again resets the backoff)."""
        return self._committed != self._start

    def _note_committed(self, checkpoint: Checkpoint | None) -> None:
        self._committed_at = time.monotonic()
        if checkpoint is not None:
            self._committed = checkpoint
            self._metrics.set_checkpoint(checkpoint.position.file, checkpoint.position.offset, time.time())

    def _observe(self) -> None:
        now = self._clock()
        self._metrics.lag.set(0.0 if self._last_event_time is None else max(0.0, now - self._last_event_time))
        self._metrics.oldest_unresolved.set(self._correlator.oldest_wait() or 0.0)
        self._metrics.pending.set(self._correlator.pending_count())


class Pipeline:
    """Leadership and recovery around `Session`s: the `run` command's whole life."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        dispatcher: Dispatcher,
        metrics: Metrics,
        health: Health,
        source_factory: SourceFactory,
        first_start: Callable[[], Checkpoint],
        options: RunOptions | None = None,
        clock: Callable[[], float] = time.time,
        recipients: RecipientResolver | None = None,
    ) -> None:
        self._settings = settings
        self._recipients = recipients or UserAlone()
        self._store = store
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._health = health
        self._source_factory = source_factory
        self._first_start = first_start
        self._options = options or RunOptions()
        self._clock = clock
        self.tally = Tally()
        self._uncommitted: list[Resolution] = []

    def run(self, stop: threading.Event) -> None:
        backoff = _Backoff()
        while not stop.is_set():
            try:
                if not self._lead_or_stand_by(stop):
                    continue
                backoff.reset()
                self._lead(stop)
            except (StoreError, SourceError) as error:
                if isinstance(error, PositionLost):
                    self._metrics.fail_closed.set(1)
                    raise FailClosed(str(error)) from None
                if isinstance(error, LeadershipLost):
                    self._metrics.leadership_lost.inc()
                elif isinstance(error, StoreError):
                    self._metrics.writer_failures.inc()
                else:
                    self._metrics.reader_restarts.inc()
                logs.warning("recovering", error=str(error), kind=type(error).__name__)
                self._health.writer_connected = self._store.connected
                stop.wait(backoff.next())
            finally:
                self._metrics.active.set(0)
        try:
            if self._uncommitted:
                self._suppress_before_exit()
        finally:
            self._health.role = "stopped"
            self._store.close()
            self._recipients.close()

    def _suppress_before_exit(self) -> None:
        """Stopping while rows AWS accepted are not committed (the primary failed): retry within
        the grace period, as the lock holder, or Moodle's cron sends every one of them again."""
        deadline = time.monotonic() + self._settings.shutdown_grace
        backoff = _Backoff()
        problem = ""
        while True:
            try:
                if not self._store.connected:
                    self._store.connect()
                    if not self._store.try_acquire_lock():
                        raise LeadershipLost("another instance holds the consumer lock")
                self._commit_uncommitted()
                return
            except StoreError as error:
                problem = str(error)
            pause = backoff.next()
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)  # backing off a failing primary, within the grace period
        rows = len(self._uncommitted)
        self._metrics.unsuppressed_at_exit.inc(rows)
        logs.error(
            "exit_with_unsuppressed_rows",
            rows=rows,
            problem=problem,
            consequence="AWS accepted these rows but they are still claimed in the outbox: the next start resends "
            "them (FIFO queue) or restores them for Moodle, counted uncertain",
            fix="restore the primary and start cdc-offload again; raise --shutdown-grace (and the pod's grace "
            "period) to wait longer",
        )
        raise ShutdownIncomplete(f"{rows} rows AWS accepted could not be suppressed before exit: {problem}")

    def _commit_uncommitted(self) -> None:
        """Suppress what AWS accepted before the primary was lost. The ledger row is in the same
        transaction as the suppression, so a row the ledger has was committed (the commit's answer
        was what got lost), or another leader handled it."""
        done = self._store.handled([r.outbox_id for r in self._uncommitted])
        retry = [r for r in self._uncommitted if r.outbox_id not in done]
        final = self._store.commit(retry, None) if retry else []
        logs.info("uncommitted_batch_retried", jobs=len(retry), already_committed=len(done))
        for r in final:
            self._metrics.jobs.labels(r.status.value, r.reason.value).inc()
        self.tally.add(final)
        self._uncommitted = []

    def _lead_or_stand_by(self, stop: threading.Event) -> bool:
        if not self._store.connected:
            self._store.connect()
        self._health.writer_connected = True
        if self._store.try_acquire_lock():
            return True
        if self._health.role != "standby":
            logs.info("standing_by", lock=self._settings.lock_name)
        self._health.role = "standby"
        self._health.loop_ticked()
        stop.wait(self._settings.standby_poll)
        return False

    def _lead(self, stop: threading.Event) -> None:
        self._health.role = "active"
        self._metrics.active.set(1)
        if self._uncommitted:
            # Accepted by AWS before the primary was lost: suppress them now, before reading on.
            self._commit_uncommitted()
        checkpoint = self._store.load_checkpoint()
        if checkpoint is None:
            checkpoint = self._first_start()
            self._store.commit([], checkpoint)
        orphans = self._store.orphaned_claims(checkpoint)
        if orphans:
            # Claimed, and the binlog will not bring them back (the position was moved past them):
            # Moodle sends them, counted as uncertain.
            restored = self._store.commit(orphans, None)
            logs.warning("orphaned_claims_restored", rows=len(restored))
            for r in restored:
                self._metrics.jobs.labels(r.status.value, r.reason.value).inc()
        logs.info("leading", position=str(checkpoint.position), gtid=checkpoint.gtid)
        self._metrics.set_checkpoint(checkpoint.position.file, checkpoint.position.offset, time.time())
        backoff = _Backoff()
        while not stop.is_set():
            session = Session(
                self._settings,
                self._store,
                self._dispatcher,
                self._metrics,
                self._health,
                self._source_factory(self._settings, checkpoint),
                checkpoint,
                self._options,
                self.tally,
                self._clock,
                recipients=self._recipients,
            )
            try:
                session.run(stop)
                return
            except StoreError:
                self._uncommitted = session.uncommitted
                raise
            except PositionLost:
                # Only the leader fails closed: an instance that was superseded while paused (its
                # successor's dump, same --server-id, cut ours off) stands by instead.
                self._store.ensure_leader()
                raise
            except SourceError as error:
                if session.progressed:
                    backoff.reset()
                self._metrics.reader_restarts.inc()
                logs.warning("reader_restart", error=str(error))
                stop.wait(backoff.next())
                checkpoint = self._store.load_checkpoint() or checkpoint


class _Backoff:
    """Exponential backoff with full jitter, capped, so a flapping server is not hammered."""

    def __init__(self, base: float = 0.2, cap: float = 10.0) -> None:
        self._base, self._cap, self._attempt = base, cap, 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        self._attempt += 1
        return random.uniform(0, min(self._cap, self._base * 2**self._attempt))  # noqa: S311 - jitter, not crypto
