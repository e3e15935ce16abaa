"""One pass over the binlog from a committed checkpoint, as the active consumer.

The reader runs in its own thread (a blocking socket read) and hands items over a bounded queue;
everything else happens on this loop's thread, so the correlator, the checkpoint and the writer
connection have a single owner. AWS answers on round threads: up to ROUNDS_IN_FLIGHT rounds are
with AWS while this loop reads on, and they are committed here, oldest first. The checkpoint never
passes a row of a round that is not committed yet (`checkpoints.py`)."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cdc_offload import logs
from cdc_offload.checkpoints import CheckpointTracker
from cdc_offload.claiming import Claimer, ClaimRules, RecipientResolver
from cdc_offload.clock import Clock
from cdc_offload.dispatch import ROUNDS_IN_FLIGHT, RoundSender
from cdc_offload.faults import crash_point
from cdc_offload.health import Health
from cdc_offload.intake import Intake
from cdc_offload.metrics import Metrics
from cdc_offload.model import Checkpoint, Position, Resolution, SourceItem
from cdc_offload.outcomes import Tally, report_committed
from cdc_offload.pacing import Pacing
from cdc_offload.policy import SendRules, triage
from cdc_offload.rounds import Round, RoundsInFlight
from cdc_offload.settings import Settings
from cdc_offload.source import ROUND_ANSWERED, Handover, ReaderEnded, ReaderThread, Source
from cdc_offload.staging import Staging
from cdc_offload.store.protocols import SessionStore
from cdc_offload.store.values import StoreError


@dataclass(frozen=True)
class RunMode:
    """What differs between the live loop and a replay of a stretch of binlog. (A replay's store
    never moves the live checkpoint, and a dry run's writes nothing: see `operations.replay`.)"""

    ignore_age: bool = False
    stop_at_end: bool = False
    on_progress: Callable[[Position], None] | None = None


@dataclass(frozen=True)
class LoopParts:
    """What the loop talks to. One bundle, built once per run and shared by its sessions."""

    store: SessionStore
    dispatcher: RoundSender
    recipients: RecipientResolver
    metrics: Metrics
    health: Health
    clock: Clock
    tally: Tally


class CommitFailed(Exception):
    """The primary refused a commit (or the lease was lost). `uncommitted` are the rows AWS may
    have accepted whose suppression is not on the primary: the leader commits them first when it
    is back, so they are never sent twice nor forgotten."""

    def __init__(self, cause: StoreError, uncommitted: list[Resolution]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.uncommitted = uncommitted


class Session:
    def __init__(self, settings: Settings, parts: LoopParts, source: Source, start: Checkpoint, mode: RunMode) -> None:
        self._settings = settings
        self._parts = parts
        self._mode = mode
        self._clock = parts.clock
        self._queue: queue.Queue[Handover] = queue.Queue(maxsize=64)
        self._reader = ReaderThread(source, self._queue, parts.health)
        self._staging = Staging(parts.clock, settings.pair_window)
        self._in_flight = RoundsInFlight(ROUNDS_IN_FLIGHT)
        holders = [self._waiting_for_partner, self._staging.holds, self._in_flight.holds]
        self._tracker = CheckpointTracker(start, holders, parts.clock, mode.on_progress)
        self._intake = Intake(settings, self._staging, self._tracker, parts.metrics, parts.clock)
        rules = ClaimRules.of(settings, parts.dispatcher.sink_name)
        self._claimer = Claimer(rules, parts.store, parts.recipients, parts.metrics, parts.clock)
        self._round_numbers = itertools.count(1)
        round_size = max(1, min(settings.max_batch, parts.dispatcher.round_limit))
        self._pacing = Pacing(self._staging, self._in_flight, round_size, parts.clock)
        self._sink = parts.dispatcher.sink_name
        self._send_rules = SendRules(settings.templates, settings.clock_skew)

    def _waiting_for_partner(self) -> Iterable[Checkpoint]:
        return self._intake.holds()

    @property
    def progressed(self) -> bool:
        return self._tracker.progressed

    def run(self, stop: threading.Event) -> None:
        """Returns when `stop` is set (after draining) or, in a replay, at the end of the stretch.
        Raises `SourceError` when the reader fails (the caller rebuilds it from the checkpoint),
        `CommitFailed` when the primary does."""
        self._reader.start()
        try:
            ended = self._loop(stop)
            self.drain()
        except StoreError as error:
            raise CommitFailed(error, self._in_flight.abandon(self._sink)) from None
        finally:
            self._reader.stop()
        if ended is not None and ended.error is not None:
            raise ended.error

    # -- the loop, step by step ---------------------------------------------------------------
    def _loop(self, stop: threading.Event) -> ReaderEnded | None:
        while True:
            self._parts.health.loop_ticked()
            # Short waits while jobs are held for a fuller round (see `Pacing`).
            ended = self._take_handovers(0.01 if self._staging.ready_count else 0.2)
            if stop.is_set():
                return ended
            self.tick()
            if self._claimer.replica_lost is not None:
                return ReaderEnded(self._claimer.replica_lost)
            if ended is not None:
                return ended

    def step(self, items: list[SourceItem]) -> None:
        """One turn of the loop with `items` handed over as the reader thread hands them: how a
        test drives the real loop without a reader thread."""
        if items:
            self._queue.put(items)
        self._take_handovers(0.0)
        self.tick()

    def tick(self) -> None:
        """Everything a turn does after taking what the reader handed over."""
        self._intake.remarked = self._claimer.note_duplicates(self._intake.remarked)
        self._commit_answered_rounds()
        self._staging.retry_deferred()
        if self._pacing.send_now(
            paused=self._claimer.paused,
            more_coming=not self._queue.empty(),
            last_event_time=self._intake.last_event_time,
        ):
            self._dispatch_ready()
        elif self._tracker.seconds_since_commit() >= self._settings.checkpoint_interval:
            self._commit_checkpoint()
        self._intake.observe(self._clock.wall())

    def _take_handovers(self, wait: float) -> ReaderEnded | None:
        """What the reader handed over since the last turn, waiting up to `wait` for the first."""
        try:
            got: Handover | None = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
        except queue.Empty:
            return None
        while got is not None:
            if isinstance(got, ReaderEnded):
                return got
            if isinstance(got, list):
                self._intake.take(got)
                if self._staging.ready_count >= self._settings.max_batch:
                    return None
            try:
                got = self._queue.get_nowait()
            except queue.Empty:
                got = None
        return None

    def drain(self) -> None:
        """What is paired is sent and recorded; what still waits for its partner is re-read after
        a restart (the checkpoint stays before it), except at the end of a replayed stretch."""
        if self._mode.stop_at_end:
            self._intake.expire_all()
        while self._staging.has_work and not self._claimer.paused:
            room = self._pacing.room()
            if self._in_flight.full or (self._staging.ready_count and room <= 0):
                self._commit_oldest_round()
                continue
            self._start_round(max(0, room))
        while self._in_flight:
            self._commit_oldest_round()
        self._commit_checkpoint()

    def _dispatch_ready(self) -> None:
        # In rounds no larger than AWS can take within one deadline (SES is rate-limited), so a
        # 5,000-user transaction is not one round whose tail misses the deadline.
        while self._staging.has_work and not self._in_flight.full and not self._claimer.paused:
            room = self._pacing.room()
            if self._staging.ready_count and room <= 0:
                return
            self._start_round(max(0, room))

    # -- a round: start, then commit ----------------------------------------------------------
    def _start_round(self, size: int) -> None:
        with self._staging.taking(size) as batch:
            ids = [job.outbox.id for job in batch.jobs] + [r.outbox_id for r in batch.unusable]
            if self._in_flight.carry(ids):
                # The same outbox row again (a re-INSERT) while its first image is with AWS: let
                # that round's ledger row answer whether it was handled.
                while self._in_flight:
                    self._commit_oldest_round()
            max_age = float("inf") if self._mode.ignore_age else self._settings.max_event_age
            recorded = self._parts.store.recorded(ids)
            rows = triage(batch.jobs, recorded, self._clock.wall(), max_age, self._send_rules)
            if rows.done:
                self._parts.tally.already_done += len(rows.done)
                logs.debug("already_handled", count=len(rows.done))
            decided = [r for r in batch.unusable if r.outbox_id not in rows.done] + rows.decided
            claims = self._claimer.claim_round(rows.fresh, rows.resumed, self._staging)
            number = next(self._round_numbers)
            deliveries = None
            if claims.to_send:
                # The window where a crash leaves rows claimed.
                logs.info("batch_dispatching", jobs=len(claims.to_send), round=number)
                deliveries = self._parts.dispatcher.submit(claims.to_send)
                deliveries.add_done_callback(self._round_answered)
            round_ = Round(number, claims.to_send, decided + claims.settled, batch.holds, deliveries, claims.marks)
            self._in_flight.add(round_)

    def _round_answered(self, _: object) -> None:
        # A full queue needs no wake-up: the loop looks at the answered rounds once it has taken it.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(ROUND_ANSWERED)

    def _commit_answered_rounds(self) -> None:
        while self._in_flight.oldest_answered():
            self._commit_oldest_round()

    def _commit_oldest_round(self) -> None:
        round_ = self._in_flight.pop_oldest()
        resolutions = round_.resolutions(self._sink)
        crash_point("before_commit")
        checkpoint = self._tracker.safe()
        try:
            final = self._parts.store.commit(resolutions, checkpoint)
        except StoreError as error:
            raise CommitFailed(error, resolutions + self._in_flight.abandon(self._sink)) from None
        crash_point("after_commit")
        self._committed(checkpoint)
        report_committed(final, round_.number if round_.to_send else None, self._parts.metrics, self._parts.tally)

    def _commit_checkpoint(self) -> None:
        checkpoint = self._tracker.safe()
        store = self._parts.store
        if checkpoint == self._tracker.committed:
            self._tracker.committed_now(None)
            # Idle: keep the lease alive, and find out now (not at the next batch) if it was lost.
            store.keep_alive()
            return
        store.commit([], checkpoint)
        self._committed(checkpoint)

    def _committed(self, checkpoint: Checkpoint) -> None:
        self._tracker.committed_now(checkpoint)
        self._parts.metrics.set_checkpoint(checkpoint.position.file, checkpoint.position.offset, self._clock.wall())
