"""In-memory stand-ins the loop's unit and property tests run on: a clock the test moves, and the
primary as the loop sees it (outbox rows with their `sent` mark, the ledger, the checkpoint), with
the real store's guards: a claim takes only rows still unsent for the same user; a commit deletes
an accepted row or restores a refused one only while it still carries our claim's mark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cdc_offload.model import Checkpoint, Claimed, Recorded, Resolution, Status


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds


class MemoryStore:
    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        # Outbox id -> (user id, `sent`).
        self.outbox: dict[int, tuple[int, int | None]] = {}
        self._ever_inserted: set[int] = set()
        self.ledger: dict[int, Resolution] = {}
        self.checkpoint: Checkpoint | None = None
        self.last_used = clock.monotonic()

    # -- what the test does to the world -----------------------------------------------------
    def outbox_insert(self, outbox_id: int, userid: int, sent: int | None) -> None:
        """A row queued by Moodle. An id seen before is the same row read again (ids are not reused)."""
        if outbox_id not in self._ever_inserted:
            self._ever_inserted.add(outbox_id)
            self.outbox[outbox_id] = (userid, sent)

    def unsent(self, outbox_id: int) -> bool:
        row = self.outbox.get(outbox_id)
        return row is not None and row[1] is None

    def has_final_word(self, outbox_id: int) -> bool:
        entry = self.ledger.get(outbox_id)
        return entry is not None and entry.status is not Status.CLAIMED

    # -- the store as the loop uses it -------------------------------------------------------
    def ensure_leader(self) -> None:
        self.last_used = self._clock.monotonic()

    def keep_alive(self) -> None:
        self.ensure_leader()

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        found = {i: self.ledger[i] for i in outbox_ids if i in self.ledger}
        return {i: Recorded(r.status.value, r.claim_mark, 0.0) for i, r in found.items()}

    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        mark = int(self._clock.wall())
        present = {r.outbox_id for r in claims if self.outbox.get(r.outbox_id) == (r.userid, None)}
        for r in claims:
            if r.outbox_id in present:
                self.outbox[r.outbox_id] = (r.userid, mark)
                self.ledger[r.outbox_id] = replace(r, status=Status.CLAIMED, claim_mark=mark)
        self.last_used = self._clock.monotonic()
        return Claimed(mark, frozenset(present), 0.0)

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        for r in resolutions:
            row = self.outbox.get(r.outbox_id)
            if r.claim_mark is not None and row is not None and row[1] == r.claim_mark:
                if r.status is Status.OFFLOADED:
                    del self.outbox[r.outbox_id]
                else:
                    self.outbox[r.outbox_id] = (row[0], None)
            self.ledger[r.outbox_id] = r
        if checkpoint is not None:
            self.checkpoint = checkpoint
        self.last_used = self._clock.monotonic()
        return list(resolutions)

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        return [], []
