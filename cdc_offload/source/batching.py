"""How the reader's items are grouped on their way to the loop, whether the reader is a thread
(`handover.ReaderThread`, over a queue) or a child process (`process`, over a pipe): one hop per
batch, not per event, because each hop (a queue put, a pickle and a pipe write) costs more than
reading an event.

The one rule that changes what the loop sees: the commits of transactions without watched rows
replace each other while held (only the newest moves the checkpoint), and one is let through
before anything else so the loop never sees a row with an older boundary after a newer commit.
When to send a batch is each carrier's own policy; `Batch.add` says what the item was so it can
decide.
"""

from __future__ import annotations

from enum import Enum

from cdc_offload.model import Commit, EventCounts, Idle, SourceItem

# Items per batch at most, so a large transaction reaches the loop in pieces.
CHUNK = 256


class Added(Enum):
    """What `Batch.add` did with an item, for the carrier's send policy."""

    HELD = "held"  # the commit of a transaction without watched rows: held back, may be replaced
    COMMIT = "commit"  # the commit of a transaction with watched rows: in the batch
    COUNTS = "counts"  # event counts for the throughput metric: in the batch, never urgent
    IDLE = "idle"  # the server has nothing more: send now
    ROW = "row"  # a row (or an undecodable one) of a watched table: in the batch


class Batch:
    """The items not yet sent, and the newest held commit."""

    __slots__ = ("_held", "_items", "_watched")

    def __init__(self) -> None:
        self._items: list[SourceItem] = []
        self._held: Commit | None = None
        self._watched = False  # the open transaction has had a watched row

    @property
    def full(self) -> bool:
        return len(self._items) >= CHUNK

    def add(self, item: SourceItem) -> Added:
        items = self._items
        if isinstance(item, Commit):
            if not self._watched:
                self._held = item
                return Added.HELD
            items.append(item)
            self._watched = False
            return Added.COMMIT
        if isinstance(item, EventCounts):
            items.append(item)
            return Added.COUNTS
        if self._held is not None:
            items.append(self._held)
            self._held = None
        items.append(item)
        if isinstance(item, Idle):
            return Added.IDLE
        self._watched = True
        return Added.ROW

    def take(self) -> list[SourceItem]:
        """Everything so far, ending with the held commit if any (the newest boundary); empties
        the batch."""
        items = self._items
        if self._held is not None:
            items.append(self._held)
            self._held = None
        self._items = []
        return items
