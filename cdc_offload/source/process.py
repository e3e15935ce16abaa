"""The binlog reader in a child process of its own.

Reading is CPU-bound Python. As a thread it shared one GIL with the loop, the commits and the AWS
threads: on a busy binlog it ran at a third of its own speed, and every AWS answer and MySQL
round trip waited for it to let go. A child process reads on the second core and hands the loop
only what it needs: the rows of the two watched tables and the transaction boundaries.

The child holds no state that matters. It reads from the checkpoint it was given; a new session
starts a new child from the committed checkpoint, exactly as with the in-process reader. Children
are forked from a fork server started at start-up, so they hold no copy of the sidecar's
connections (a writer connection the sidecar closes is closed on the server, and its lock goes
with it). A child exits as soon as the sidecar's end of its pipe closes, even after a SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Protocol

from cdc_offload.errors import SourceError
from cdc_offload.model import Checkpoint, SourceItem
from cdc_offload.settings import Settings
from cdc_offload.source.batching import Added, Batch
from cdc_offload.source.handover import ReaderEnded, Source

# What the child has read goes to the loop at the latest this long after it was read, even while
# the server keeps it busy; as soon as the next read would wait, it goes at once.
MAX_HOLD_SECONDS = 0.02


class OpenSource(Protocol):
    def __call__(self, settings: Settings, start: Checkpoint, *, on_wait: Callable[[], None]) -> Source: ...


class _Sender:
    """Sends batches (`batching.Batch`) to the parent: one message per pickle and pipe write, which
    is what the parent's reader thread pays for. A batch goes when full, when it has waited
    MAX_HOLD_SECONDS, on Idle, and (`flush`) whenever the next read would wait."""

    def __init__(self, out: multiprocessing.connection.Connection) -> None:
        self._out = out
        self._batch = Batch()
        self._sent_at = time.monotonic()

    def add(self, item: SourceItem) -> None:
        added = self._batch.add(item)
        if added is Added.HELD:
            return
        if added is Added.IDLE or self._batch.full or time.monotonic() - self._sent_at >= MAX_HOLD_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Everything so far, with the newest boundary (called before a read would wait)."""
        items = self._batch.take()
        if items:
            self._out.send(items)
        self._sent_at = time.monotonic()

    def end(self, error: SourceError | None) -> None:
        self.flush()
        self._out.send(ReaderEnded(error))


def _exit_with_the_sidecar(out: multiprocessing.connection.Connection) -> None:
    """Exit as soon as the sidecar's end of our pipe is closed: it died (even by SIGKILL) or ended
    this session. A blocking binlog read would not notice before its next message, and until then
    it would keep a dump open under our server id."""

    def watch() -> None:
        poller = select.poll()
        # A pipe's write end reports POLLERR once no reader is left, whatever the mask.
        poller.register(out.fileno(), 0)
        while True:
            for _, event in poller.poll():
                if event & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    os._exit(0)

    threading.Thread(target=watch, name="sidecar-watch", daemon=True).start()
    # Ctrl-C in a terminal reaches the whole process group; the sidecar decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read(
    open_source: OpenSource,
    settings: Settings,
    start: Checkpoint,
    out: multiprocessing.connection.Connection,
) -> None:
    _exit_with_the_sidecar(out)
    batcher = _Sender(out)
    try:
        try:
            for item in open_source(settings, start, on_wait=batcher.flush):
                batcher.add(item)
            ended = None
        except SourceError as error:
            ended = error
        except Exception as error:  # noqa: BLE001 - any reader failure means: rebuild from the checkpoint
            ended = SourceError(f"binlog reader failed: {type(error).__name__}")
        batcher.end(ended)
    except OSError:
        pass  # the sidecar's end is closed: it is stopping this session


class ProcessSource:
    """A `Source` whose reading happens in a child process (see the module doc)."""

    def __init__(self, settings: Settings, start: Checkpoint, open_source: OpenSource) -> None:
        self._settings = settings
        self._start = start
        self._open_source = open_source
        self._process: BaseProcess | None = None
        self._closed = False

    def __iter__(self) -> Iterator[SourceItem]:
        if self._closed:
            return
        start_fork_server()
        context = _context()
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_read,
            args=(self._open_source, self._settings, self._start, sender),
            name="binlog-reader",
            daemon=True,
        )
        process.start()
        self._process = process
        sender.close()
        try:
            if self._closed:  # `close` ran while the child was starting, before it could see it
                return
            while True:
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    if self._closed:
                        return
                    raise SourceError("the binlog reader process ended") from None
                if isinstance(message, ReaderEnded):
                    if message.error is not None:
                        raise message.error
                    return
                yield from message
        finally:
            receiver.close()
            self.close()

    def close(self) -> None:
        self._closed = True
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)


def process_supported() -> bool:
    """Linux only: where the fork server and the pipe's POLLERR behave as relied on here."""
    return sys.platform == "linux"


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, multiprocessing.context.ForkServerContext)
    return context


def start_fork_server(*, wait: bool = False) -> None:
    """Start the fork server, with the reader imported, so a session's reader starts in
    milliseconds instead of waiting for a new interpreter. `wait`: until it has imported all that
    and forked a first child (at start-up, before leading).

    Every child runs the program's main script again before its target (multiprocessing's
    `prepare`). Preloading `__main__` is meant to make that free, but the fork server never did it
    before the fix for python/cpython#137996 (3.11 and 3.12 do not have it): for the `cdc-offload`
    script the re-run is an import of the CLI (click and every command), ~55 ms before each
    reader's first read here. So the CLI module is preloaded by name too, and the re-run finds it
    imported (a reader then starts in ~10 ms)."""
    context = _context()
    context.set_forkserver_preload(["__main__", __name__, "cdc_offload.source", "cdc_offload.cli"])
    multiprocessing.forkserver.ensure_running()
    if wait:
        probe = context.Process(target=_nothing, name="fork-server-warm-up", daemon=True)
        probe.start()
        probe.join(60)


def _nothing() -> None:
    return
