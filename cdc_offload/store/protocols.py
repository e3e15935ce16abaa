"""The primary as each part of the loop sees it. The loop depends on these, never on `Store`:
the live `Store`, a replay's wrappers (`replaying.py`) and the tests' in-memory fakes all fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cdc_offload.model import Checkpoint, Claimed, Recorded, Resolution


class ClaimStore(Protocol):
    """What the claimer needs: take rows from the outbox, and note rows IOMAD sent again."""

    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None: ...

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]: ...


class SessionStore(ClaimStore, Protocol):
    """The primary as a session uses it."""

    def ensure_leader(self) -> None: ...

    def keep_alive(self) -> None:
        """Renew the lease if a third of it has passed since the primary last heard from us."""
        ...

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]: ...

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]: ...


class LeaderStore(SessionStore, Protocol):
    """The primary as the leader uses it between sessions."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def try_acquire_lock(self) -> bool: ...

    def load_checkpoint(self) -> Checkpoint | None: ...

    def handled(self, outbox_ids: Sequence[int]) -> set[int]: ...

    def orphaned_claims(self, before: Checkpoint) -> list[Resolution]: ...
