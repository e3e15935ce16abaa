"""The stores a replay runs through: the live checkpoint is never moved by a replay, and a dry run
writes nothing at all. The loop is the same; only what it is given differs."""

from __future__ import annotations

from collections.abc import Sequence

from cdc_offload.model import Checkpoint, Claimed, Recorded, Resolution
from cdc_offload.store.protocols import SessionStore


class KeepLivePosition:
    """Suppresses and records like the live loop, but leaves the checkpoint where the live run has it."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def ensure_leader(self) -> None:
        self._store.ensure_leader()

    def keep_alive(self) -> None:
        self._store.keep_alive()

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        return self._store.recorded(outbox_ids)

    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        return self._store.claim(claims, task_lock, wait)

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        return self._store.commit(resolutions, None)

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        return self._store.note_duplicates(outbox_ids)


class DryRun(KeepLivePosition):
    """Reads the ledger (rows handled before are reported as such) and writes nothing: every row
    the live loop would claim is reported as claimed, every commit as made."""

    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        return Claimed(0, frozenset(r.outbox_id for r in claims), 0.0)

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        return list(resolutions)

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        return [], []
