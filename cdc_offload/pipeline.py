"""Leadership and recovery around `Session`s: the `run` command's whole life.

Named steps: stand by until this instance holds the consumer lock (`_lead_or_stand_by`); as the
leader, first suppress what AWS accepted before the primary was lost, then resume from the
checkpoint and restore claims the binlog will not bring back (`_take_over`); run sessions,
rebuilding the reader from the checkpoint when it fails (`_lead`); on any store failure, back off
and start over; on the way out, suppress what is left within the grace period."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cdc_offload import logs
from cdc_offload.errors import FailClosed, PositionLost, ShutdownIncomplete, SourceError
from cdc_offload.model import Checkpoint, Resolution
from cdc_offload.outcomes import Tally
from cdc_offload.session import CommitFailed, LoopParts, RunMode, Session
from cdc_offload.settings import Settings
from cdc_offload.source import SourceFactory
from cdc_offload.store.protocols import LeaderStore
from cdc_offload.store.values import LeadershipLost, StoreError


@dataclass(frozen=True)
class Sources:
    open: SourceFactory
    # Where a consumer with no checkpoint yet begins (the source's current end).
    first_start: Callable[[], Checkpoint]


class Pipeline:
    def __init__(
        self, settings: Settings, store: LeaderStore, parts: LoopParts, sources: Sources, mode: RunMode | None = None
    ) -> None:
        """`parts.store` is `store`: sessions see only what they need of it."""
        self._settings = settings
        self._store = store
        self._parts = parts
        self._sources = sources
        self._mode = mode or RunMode()
        # Rows AWS accepted whose suppression the primary refused: committed first, whoever leads.
        self._uncommitted: list[Resolution] = []

    @property
    def tally(self) -> Tally:
        return self._parts.tally

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        metrics, health = self._parts.metrics, self._parts.health
        while not stop.is_set():
            try:
                if not self._lead_or_stand_by(stop):
                    continue
                backoff.reset()
                self._lead(stop)
            except (StoreError, SourceError) as error:
                if isinstance(error, PositionLost):
                    metrics.fail_closed.set(1)
                    raise FailClosed(str(error)) from None
                if isinstance(error, LeadershipLost):
                    metrics.leadership_lost.inc()
                elif isinstance(error, StoreError):
                    metrics.writer_failures.inc()
                else:
                    metrics.reader_restarts.inc()
                logs.warning("recovering", error=str(error), kind=type(error).__name__)
                health.writer_connected = self._store.connected
                stop.wait(backoff.next())
            finally:
                metrics.active.set(0)
        try:
            if self._uncommitted:
                self._suppress_before_exit()
        finally:
            health.role = "stopped"
            self._store.close()
            self._parts.recipients.close()

    def _lead_or_stand_by(self, stop: threading.Event) -> bool:
        health = self._parts.health
        if not self._store.connected:
            self._store.connect()
        health.writer_connected = True
        if self._store.try_acquire_lock():
            return True
        if health.role != "standby":
            logs.info("standing_by", lock=self._settings.lock_name)
        health.role = "standby"
        health.loop_ticked()
        stop.wait(self._settings.standby_poll)
        return False

    def _lead(self, stop: threading.Event) -> None:
        checkpoint = self._take_over()
        backoff = Backoff()
        while not stop.is_set():
            session = Session(
                self._settings, self._parts, self._sources.open(self._settings, checkpoint), checkpoint, self._mode
            )
            try:
                session.run(stop)
                return
            except CommitFailed as failed:
                self._uncommitted = failed.uncommitted
                raise failed.cause from None
            except PositionLost:
                # Only the leader fails closed: an instance that was superseded while paused (its
                # successor's dump, same --server-id, cut ours off) stands by instead.
                self._store.ensure_leader()
                raise
            except SourceError as error:
                if session.progressed:
                    backoff.reset()
                self._parts.metrics.reader_restarts.inc()
                logs.warning("reader_restart", error=str(error))
                stop.wait(backoff.next())
                checkpoint = self._store.load_checkpoint() or checkpoint

    def _take_over(self) -> Checkpoint:
        """Become the active consumer: settle what the last leader left, then the checkpoint."""
        metrics = self._parts.metrics
        self._parts.health.role = "active"
        metrics.active.set(1)
        if self._uncommitted:
            # Accepted by AWS before the primary was lost: suppress them now, before reading on.
            self._commit_uncommitted()
        checkpoint = self._store.load_checkpoint()
        if checkpoint is None:
            checkpoint = self._sources.first_start()
            self._store.commit([], checkpoint)
        orphans = self._store.orphaned_claims(checkpoint)
        if orphans:
            # Claimed, and the binlog will not bring them back (the position was moved past them):
            # Moodle sends them, counted as uncertain.
            restored = self._store.commit(orphans, None)
            logs.warning("orphaned_claims_restored", rows=len(restored))
            for r in restored:
                metrics.jobs.labels(r.status.value, r.reason.value).inc()
        logs.info("leading", position=str(checkpoint.position), gtid=checkpoint.gtid)
        metrics.set_checkpoint(checkpoint.position.file, checkpoint.position.offset, self._parts.clock.wall())
        return checkpoint

    def _commit_uncommitted(self) -> None:
        """Suppress what AWS accepted before the primary was lost. The ledger row is in the same
        transaction as the suppression, so a row the ledger has was committed (the commit's answer
        was what got lost), or another leader handled it."""
        done = self._store.handled([r.outbox_id for r in self._uncommitted])
        retry = [r for r in self._uncommitted if r.outbox_id not in done]
        final = self._store.commit(retry, None) if retry else []
        logs.info("uncommitted_batch_retried", jobs=len(retry), already_committed=len(done))
        for r in final:
            self._parts.metrics.jobs.labels(r.status.value, r.reason.value).inc()
        self._parts.tally.add(final)
        self._uncommitted = []

    def _suppress_before_exit(self) -> None:
        """Stopping while rows AWS accepted are not committed (the primary failed): retry within
        the grace period, as the lock holder, or Moodle's cron sends every one of them again."""
        clock = self._parts.clock
        deadline = clock.monotonic() + self._settings.shutdown_grace
        backoff = Backoff()
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
            if clock.monotonic() + pause >= deadline:
                break
            time.sleep(pause)  # backing off a failing primary, within the grace period
        rows = len(self._uncommitted)
        self._parts.metrics.unsuppressed_at_exit.inc(rows)
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


class Backoff:
    """Exponential backoff with full jitter, capped, so a flapping server is not hammered."""

    def __init__(self, base: float = 0.2, cap: float = 10.0) -> None:
        self._base, self._cap, self._attempt = base, cap, 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        self._attempt += 1
        return random.uniform(0, min(self._cap, self._base * 2**self._attempt))  # noqa: S311 - jitter, not crypto
