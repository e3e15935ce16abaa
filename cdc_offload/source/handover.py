"""The binlog reader's thread and what it hands the loop: chunks of items over a bounded queue (one
queue hop per chunk, not per event), the news that it ended, and a wake-up when AWS answered."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cdc_offload.errors import SourceError
from cdc_offload.health import Health
from cdc_offload.model import Checkpoint, Commit, EventCounts, Idle, SourceItem
from cdc_offload.settings import Settings


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
    """Runs the blocking source and hands items over in chunks (one queue hop per chunk, not per
    event). Commits of transactions without watched rows are coalesced: only the newest matters."""

    CHUNK = 256
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
        chunk: list[SourceItem] = []
        held_commit: Commit | None = None
        watched_in_txn = False
        last_put = time.monotonic()
        try:
            for item in self._source:
                if self._stopping.is_set():
                    return
                self._health.reader_alive()
                if isinstance(item, Commit):
                    # While the loop has not taken the last chunk (a dispatch round is with AWS),
                    # grow this one instead of queueing many small ones: the queue is bounded in
                    # chunks, and one chunk per transaction would cap a slow round at 64 of them.
                    busy = not self._out.empty()
                    if watched_in_txn:
                        chunk.append(item)
                        watched_in_txn = False
                        if busy and len(chunk) < self.CHUNK:
                            continue
                    else:
                        held_commit = item
                        recent = time.monotonic() - last_put < self.COALESCE_SECONDS
                        if (busy or recent) and len(chunk) < self.CHUNK:
                            continue
                        chunk.append(item)
                    held_commit = None
                elif isinstance(item, EventCounts):
                    chunk.append(item)
                    continue
                elif isinstance(item, Idle):
                    if held_commit is not None:
                        chunk.append(held_commit)
                        held_commit = None
                    chunk.append(item)
                else:
                    if held_commit is not None:
                        chunk.append(held_commit)
                        held_commit = None
                    watched_in_txn = True
                    chunk.append(item)
                    if len(chunk) < self.CHUNK:
                        continue
                self._put(chunk)
                chunk = []
                last_put = time.monotonic()
            if held_commit is not None:
                chunk.append(held_commit)
            if chunk:
                self._put(chunk)
            self._put(ReaderEnded(None))
        except SourceError as error:
            self._put(ReaderEnded(error))
        except Exception as error:  # noqa: BLE001 - any reader failure means: rebuild from the checkpoint
            self._put(ReaderEnded(SourceError(f"binlog reader failed: {type(error).__name__}")))
        finally:
            self._health.reader_lost()

    def _put(self, item: list[SourceItem] | ReaderEnded) -> None:
        # A full queue is back-pressure; a stopped session no longer drains it, so give up then.
        while not self._stopping.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
