"""The primary as the leader uses it: its parts (lease and consumer lock, checkpoint, ledger,
outbox) composed over one connection, each write in one transaction that first checks the
consumer lock, so an instance that lost leadership (paused, partitioned) cannot commit anything."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pymysql

from cdc_offload.clock import SYSTEM_CLOCK, Clock
from cdc_offload.model import Checkpoint, Claimed, Recorded, Resolution, Status
from cdc_offload.mysql_errors import describe
from cdc_offload.settings import Settings
from cdc_offload.store.checkpoint import CheckpointTable
from cdc_offload.store.connection import Link
from cdc_offload.store.lease import ConsumerLock, Lease
from cdc_offload.store.ledger import Ledger
from cdc_offload.store.outbox import Outbox, claimed
from cdc_offload.store.schema import schema_present, schema_statements
from cdc_offload.store.sql import Cursor
from cdc_offload.store.values import LeadershipLost, StoreError


class Store:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self._schema = settings.state_schema
        self._clock = clock
        self._link = Link(settings.writer, Lease(settings.lease_seconds, clock))
        self._lock = ConsumerLock(settings.lock_name)
        self._checkpoint = CheckpointTable(settings.state_schema, settings.consumer)
        self._ledger = Ledger(settings.state_schema)
        self._outbox = Outbox.of(settings)

    # -- connection and leadership ---------------------------------------------------------
    def connect(self) -> None:
        self._link.open()

    def close(self) -> None:
        self._link.close()

    @property
    def connected(self) -> bool:
        return self._link.connected

    def try_acquire_lock(self) -> bool:
        """Become the active consumer if nobody else is (GET_LOCK lives as long as this connection)."""
        with self._link.transaction("lock request failed") as cursor:
            return self._lock.try_acquire(cursor)

    def ensure_leader(self) -> None:
        """Raise `LeadershipLost` unless this connection holds the consumer lock right now."""
        with self._link.transaction("lock check failed") as cursor:
            self._lock.check(cursor)

    def keep_alive(self) -> None:
        """Called when idle: once a third of the lease has passed without a word, renew it, and
        find out now (not at the next batch) if the lock was lost."""
        if self._link.lease.renewal_due():
            self.ensure_leader()

    # -- schema ------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        # Errors as the server raised them: `init` and the tests report the MySQL error itself.
        with self._link.cursor() as cursor:
            for statement in schema_statements(self._schema):
                cursor.execute(statement)
        self._link.commit()

    def schema_present(self) -> bool:
        try:
            with self._link.transaction("cannot read the schema", close_on_error=False) as cursor:
                return schema_present(cursor, self._schema)
        except StoreError:
            return False

    # -- checkpoint --------------------------------------------------------------------------
    def load_checkpoint(self) -> Checkpoint | None:
        with self._link.transaction("cannot read the checkpoint", close_on_error=False) as cursor:
            return self._checkpoint.load(cursor)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Set the position outside the pipeline (`position set`); the caller holds the lock."""
        with self._link.transaction("cannot write the checkpoint", close_on_error=False) as cursor:
            self._lock.check(cursor)
            self._checkpoint.write(cursor, checkpoint)

    # -- ledger ------------------------------------------------------------------------------
    def handled(self, outbox_ids: Sequence[int]) -> set[int]:
        """Outbox ids the ledger has a final word on: a replay or restart must not send them again.
        (A `claimed` row is not final: `recorded` says what to do with it.)"""
        return {i for i, entry in self.recorded(outbox_ids).items() if entry.status != Status.CLAIMED}

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        """What the ledger holds for these rows."""
        if not outbox_ids:
            return {}
        with self._link.transaction("cannot read the ledger", close_on_error=False) as cursor:
            return self._ledger.recorded(cursor, outbox_ids)

    def orphaned_claims(self, before: Checkpoint) -> list[Resolution]:
        """`claimed` rows the binlog will not bring back (recorded before the checkpoint, e.g. after
        `position set`): the caller restores them for Moodle rather than forget them."""
        with self._link.transaction("cannot read the ledger", close_on_error=False) as cursor:
            return self._ledger.claimed_before(cursor, before)

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Rows we delivered that IOMAD's task marked sent again (it sent them too): recorded as
        `duplicate_observed`. Returns the ids the ledger had as ours, and those still `claimed`
        (AWS has not answered yet: the caller asks again once they are settled)."""
        if not outbox_ids:
            return [], []
        with self._link.transaction("cannot record duplicates") as cursor:
            self._lock.check(cursor)
            return self._ledger.note_duplicates(cursor, outbox_ids)

    # -- the outbox: claim, then settle with the ledger and the checkpoint -------------------
    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        """Take rows from the outbox before AWS sees them (claim-first): under the lock IOMAD's
        email task runs under, so the task is never between loading a row and marking it, each
        row still unsent is marked with our claim (`sent` = the claim time) and recorded `claimed`
        in one transaction. None when the task holds its lock past `wait`: nothing was claimed."""
        mark = int(self._clock.wall())
        link = self._link
        try:
            with link.cursor() as cursor:
                if task_lock is not None and not _take_named_lock(cursor, task_lock, wait):
                    link.commit()
                    return None
                held_from = time.perf_counter()
                try:
                    self._lock.check(cursor)
                    present = self._outbox.claim(cursor, claims, mark)
                    self._ledger.record(cursor, claimed(claims, present, mark))
                    link.commit()
                except BaseException:
                    # Never half a claim: rows marked ours without their `claimed` ledger rows would be
                    # hidden from Moodle and unknown to us. Undone before the task's lock is let go.
                    link.rollback_quietly()
                    raise
                finally:
                    if task_lock is not None and link.connected:
                        cursor.execute("SELECT RELEASE_LOCK(%s)", (task_lock,))
                        link.commit_quietly()
                return Claimed(mark, frozenset(present), time.perf_counter() - held_from)
        except LeadershipLost:
            link.rollback_quietly()
            raise
        except pymysql.err.Error as error:
            # The server releases a named lock with the session: closing cannot leave the task locked out.
            link.rollback_quietly()
            link.close()
            raise StoreError(f"claim on the primary failed: {describe(error)}") from None

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        """Settle claimed rows (AWS accepted: delete, or keep marked sent; otherwise restore them for
        Moodle), record every resolution and move the checkpoint: all or nothing.

        Returns the resolutions as recorded (an accepted row someone else changed is `raced`)."""
        with self._link.transaction("commit on the primary failed") as cursor:
            self._lock.check(cursor)
            final = self._outbox.settle(cursor, resolutions)
            self._ledger.record(cursor, final)
            self._ledger.record_recipients(cursor, final)
            if checkpoint is not None:
                self._checkpoint.write(cursor, checkpoint)
        return final


def _take_named_lock(cursor: Cursor, name: str, wait: float) -> bool:
    cursor.execute("SELECT GET_LOCK(%s, %s)", (name, wait))
    row = cursor.fetchone()
    return bool(row and row[0] == 1)
