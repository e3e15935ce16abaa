"""What the store's parts hand across their boundaries: its two errors, and the values of
`cdc_offload.model` it answers with (kept there, where the loop reads them)."""

from __future__ import annotations

from cdc_offload.model import Claimed, Recorded

__all__ = ["Claimed", "LeadershipLost", "Recorded", "StoreError"]


class StoreError(RuntimeError):
    """The primary could not be written (connection lost, lock lost, no permission)."""


class LeadershipLost(StoreError):
    """This connection no longer holds the consumer lock: another instance may be active."""
