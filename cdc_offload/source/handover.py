"""The binlog reader's thread and what it hands the loop: batches of items over a bounded queue
(one queue hop per batch, not per event), the news that it ended, and a wake-up when AWS answered.
The queue's item types live here, with the thread that fills it; the loop imports them from here
and this package never imports the loop."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cdc_offload.errors import SourceError
from cdc_offload.health import Health
from cdc_offload.model import Checkpoint, SourceItem
from cdc_offload.settings import Settings
from cdc_offload.source.batching import Added, Batch


class Source(Protocol):
    def __iter__(self) -> Iterator[SourceItem]: ...

    def close(self) -> None: ...


SourceFactory = Callable[[Settings, Checkpoint], Source]


@dataclass(frozen=True, slots=True)
class ReaderEnded:
    error: SourceError | None


@dataclass(frozen=True, slots=True)
class RoundAnswered:
    """Wakes the loop when AWS has answered a round, so its commit does not wait for a timeout."""


ROUND_ANSWERED = RoundAnswered()
Handover = list[SourceItem] | ReaderEnded | RoundAnswered


class ReaderThread(threading.Thread):
    """Runs the blocking source and hands items over in batches (`batching.Batch`: one queue hop
    per batch, not per event; commits of transactions without watched rows coalesced)."""

    COALESCE_SECONDS = 0.05

    def __init__(self, source: Source, out: queue.Queue[Handover], health: Health) -> None:
        super().__init__(name="binlog-reader", daemon=True)
        self._source = source
        self._out = out
        self._health = health
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._source.close()

    def run(self) -> None:
        batch = Batch()
        last_put = time.monotonic()
        try:
            for item in self._source:
                if self._stopping.is_set():
                    return
                self._health.reader_alive()
                if self._send_now(batch.add(item), batch, last_put):
                    self._put(batch.take())
                    last_put = time.monotonic()
            rest = batch.take()
            if rest:
                self._put(rest)
            self._put(ReaderEnded(None))
        except SourceError as error:
            self._put(ReaderEnded(error))
        except Exception as error:  # noqa: BLE001 - any reader failure means: rebuild from the checkpoint
            self._put(ReaderEnded(SourceError(f"binlog reader failed: {type(error).__name__}")))
        finally:
            self._health.reader_lost()

    def _send_now(self, added: Added, batch: Batch, last_put: float) -> bool:
        """While the loop has not taken the last batch (a dispatch round is with AWS), grow this
        one instead of queueing many small ones: the queue is bounded in batches, and one batch per
        transaction would cap a slow round at 64 of them. A held commit also waits a moment for the
        next one to replace it."""
        if added is Added.COUNTS:
            return False
        if added is Added.IDLE or batch.full:
            return True
        if added is Added.ROW:
            return False
        busy = not self._out.empty()
        if added is Added.COMMIT:
            return not busy
        return not busy and time.monotonic() - last_put >= self.COALESCE_SECONDS

    def _put(self, item: list[SourceItem] | ReaderEnded) -> None:
        # A full queue is back-pressure; a stopped session no longer drains it, so give up then.
        while not self._stopping.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
