"""The primary in memory, with the real store's rules, for tests that need no server: outbox rows
with their `sent` mark, the ledger, the checkpoint and the consumer lock with its lease (the real
`Lease`, on the test's clock). It satisfies `cdc_offload.store.protocols.LeaderStore`, and
tests/test_store_fake_agrees.py runs one scenario against it and the real `Store` alike.

The rules kept: a claim takes only rows still unsent for the same user; a commit deletes an
accepted row (or, with `suppress="mark-sent"`, leaves it marked) and restores a refused one only
while it still carries our claim's mark; an accepted row someone re-marked after our claim is
`duplicate_observed`; the ledger's first final word wins (only a `claimed` row takes an outcome);
nothing is written without the consumer lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cdc_offload.clock import Clock
from cdc_offload.model import Checkpoint, Claimed, Reason, Recorded, Resolution, Status
from cdc_offload.store.lease import Lease
from cdc_offload.store.outbox import claimed
from cdc_offload.store.values import LeadershipLost


class MemoryStore:
    def __init__(
        self, clock: Clock, lease_seconds: float = 30.0, suppress: str = "delete", leading: bool = True
    ) -> None:
        """`leading`: connected and holding the lock from the start (the loop's tests begin as leader)."""
        self._clock = clock
        self._delete = suppress == "delete"
        self.lease = Lease(lease_seconds, clock)
        # Outbox id -> (user id, `sent`).
        self.outbox: dict[int, tuple[int, int | None]] = {}
        self._ever_inserted: set[int] = set()
        self.ledger: dict[int, Resolution] = {}
        self._handled_at: dict[int, float] = {}
        self.checkpoint: Checkpoint | None = None
        self._connected = leading
        # Whether the lock is ours: taken by `try_acquire_lock`, lost by `lose_lock` or a lapsed lease.
        self._leading = leading

    @property
    def last_used(self) -> float:
        return self.lease.last_used

    # -- what the test does to the world -----------------------------------------------------
    def outbox_insert(self, outbox_id: int, userid: int, sent: int | None) -> None:
        """A row queued by Moodle. An id seen before is the same row read again (ids are not reused)."""
        if outbox_id not in self._ever_inserted:
            self._ever_inserted.add(outbox_id)
            self.outbox[outbox_id] = (userid, sent)

    def outbox_mark(self, outbox_id: int, sent: int) -> None:
        """IOMAD's task marks a row sent (it sent the email)."""
        userid, _ = self.outbox[outbox_id]
        self.outbox[outbox_id] = (userid, sent)

    def lose_lock(self) -> None:
        """Another instance took over (a stray RELEASE_LOCK, a proxy's reconnect)."""
        self._leading = False

    def unsent(self, outbox_id: int) -> bool:
        row = self.outbox.get(outbox_id)
        return row is not None and row[1] is None

    def has_final_word(self, outbox_id: int) -> bool:
        entry = self.ledger.get(outbox_id)
        return entry is not None and entry.status is not Status.CLAIMED

    # -- connection and leadership -----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        # A new session: the lock went with the old one.
        self._connected, self._leading = True, False
        self.lease.used()

    def close(self) -> None:
        self._connected = self._leading = False

    def try_acquire_lock(self) -> bool:
        self._talk()
        self._leading = True
        return True

    def ensure_leader(self) -> None:
        self._talk()
        self._check_lock()

    def keep_alive(self) -> None:
        if self.lease.renewal_due():
            self.ensure_leader()

    def _talk(self) -> None:
        if self.lease.expired():
            # The server closed the idle session (wait_timeout), and the lock with it.
            self._leading = False
        self.lease.used()

    def _check_lock(self) -> None:
        if not self._leading:
            raise LeadershipLost("this instance no longer holds the consumer lock; another may be active")

    # -- checkpoint and ledger ---------------------------------------------------------------
    def load_checkpoint(self) -> Checkpoint | None:
        self._talk()
        return self.checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._talk()
        self._check_lock()
        self.checkpoint = checkpoint

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        if not outbox_ids:
            return {}
        self._talk()
        now = self._clock.wall()
        found = {i: self.ledger[i] for i in outbox_ids if i in self.ledger}
        return {i: Recorded(r.status.value, r.claim_mark, now - self._handled_at[i]) for i, r in found.items()}

    def handled(self, outbox_ids: Sequence[int]) -> set[int]:
        return {i for i, entry in self.recorded(outbox_ids).items() if entry.status != Status.CLAIMED}

    def orphaned_claims(self, before: Checkpoint) -> list[Resolution]:
        self._talk()
        return [
            Resolution(
                r.outbox_id,
                r.userid,
                Status.UNCERTAIN,
                Reason.NO_ANSWER,
                r.position,
                r.event_time,
                claim_mark=r.claim_mark,
            )
            for r in self.ledger.values()
            if r.status is Status.CLAIMED
            and (r.position.file, r.position.offset) < (before.position.file, before.position.offset)
        ]

    def _record(self, resolutions: Sequence[Resolution]) -> None:
        for r in resolutions:
            old = self.ledger.get(r.outbox_id)
            if old is None:
                self.ledger[r.outbox_id] = r
            elif old.status is Status.CLAIMED:
                # The row keeps where and when it was first seen; the outcome is the new word's.
                self.ledger[r.outbox_id] = replace(
                    old,
                    status=r.status,
                    reason=r.reason,
                    sink=r.sink,
                    message_id=r.message_id,
                    attempts=r.attempts,
                    claim_mark=r.claim_mark,
                )
            else:
                continue
            self._handled_at[r.outbox_id] = self._clock.wall()

    # -- the outbox --------------------------------------------------------------------------
    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        self._talk()
        self._check_lock()
        mark = int(self._clock.wall())
        present = {r.outbox_id for r in claims if self.outbox.get(r.outbox_id) == (r.userid, None)}
        for outbox_id in present:
            self.outbox[outbox_id] = (self.outbox[outbox_id][0], mark)
        self._record(claimed(claims, present, mark))
        return Claimed(mark, frozenset(present), 0.0)

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        self._talk()
        self._check_lock()
        final = [self._settle(r) for r in resolutions]
        self._record(final)
        if checkpoint is not None:
            self.checkpoint = checkpoint
        return final

    def _settle(self, r: Resolution) -> Resolution:
        row = self.outbox.get(r.outbox_id)
        if r.claim_mark is None or row is None:
            return r
        ours = row[1] == r.claim_mark
        if r.status is not Status.OFFLOADED:
            if ours:
                self.outbox[r.outbox_id] = (row[0], None)
            return r
        if not ours:
            # IOMAD's task marked it after loading it before our claim: it sent it too.
            return replace(r, status=Status.DUPLICATE_OBSERVED, reason=Reason.SENT_BY_MOODLE)
        if self._delete:
            del self.outbox[r.outbox_id]
        return r

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        if not outbox_ids:
            return [], []
        self._talk()
        self._check_lock()
        found = {i: self.ledger[i].status for i in outbox_ids if i in self.ledger}
        ours = sorted(i for i, s in found.items() if s is Status.OFFLOADED)
        pending = sorted(i for i, s in found.items() if s is Status.CLAIMED)
        for i in ours:
            self.ledger[i] = replace(self.ledger[i], status=Status.DUPLICATE_OBSERVED, reason=Reason.SENT_BY_MOODLE)
        return ours, pending
