"""Operator actions outside the live loop: move the checkpoint, replay a stretch of binlog.

Both refuse to act while another instance holds the consumer lock: two writers of one
checkpoint would each undo the other's work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from cdc_offload import tls
from cdc_offload.clock import SYSTEM_CLOCK
from cdc_offload.dispatch import WouldSend
from cdc_offload.health import Health
from cdc_offload.metrics import Metrics
from cdc_offload.model import Checkpoint, Position
from cdc_offload.outcomes import Tally
from cdc_offload.recipients.lookup import RecipientLookup
from cdc_offload.replaying import DryRun, KeepLivePosition
from cdc_offload.runtime import make_dispatcher
from cdc_offload.session import LoopParts, RunMode, Session
from cdc_offload.settings import Settings
from cdc_offload.source import connection_kwargs, open_source
from cdc_offload.store import Store


class OperationRefused(RuntimeError):
    """The action would be unsafe now (another instance is active, bad range)."""


def _lead(store: Store, action: str) -> None:
    store.connect()
    if not store.try_acquire_lock():
        store.close()
        raise OperationRefused(f"another cdc-offload instance is active; stop it before `{action}`")


def set_position(settings: Settings, checkpoint: Checkpoint) -> None:
    store = Store(settings)
    _lead(store, "position set")
    try:
        store.save_checkpoint(checkpoint)
    finally:
        store.close()


def show_position(settings: Settings) -> Checkpoint | None:
    store = Store(settings)
    store.connect()
    try:
        return store.load_checkpoint()
    finally:
        store.close()


def binlog_sizes(settings: Settings) -> dict[str, int]:
    connection = tls.connect(settings.source, connection_kwargs(settings.source))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW BINARY LOGS")
            return {str(row[0]): int(row[1]) for row in cursor.fetchall()}
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class ReplayRange:
    start: Position
    end: Position
    total_bytes: int

    def done_bytes(self, at: Position, sizes: dict[str, int]) -> int:
        done = 0
        for name in sorted(sizes):
            if name < self.start.file or name > at.file:
                continue
            first = self.start.offset if name == self.start.file else 0
            last = at.offset if name == at.file else sizes[name]
            done += max(0, last - first)
        return min(done, self.total_bytes)


def plan_replay(settings: Settings, start: Position, end: Position | None) -> tuple[ReplayRange, dict[str, int]]:
    sizes = binlog_sizes(settings)
    if start.file not in sizes:
        raise OperationRefused(f"--from {start}: the server has no binlog file {start.file} (purged?)")
    last_file = max(sizes)
    end = end or Position(last_file, sizes[last_file])
    if end <= start:
        raise OperationRefused(f"--to {end} is not after --from {start}")
    whole = ReplayRange(start, end, 0)
    return ReplayRange(start, end, whole.done_bytes(end, sizes)), sizes


def replay(
    settings: Settings,
    span: ReplayRange,
    *,
    dry_run: bool,
    ignore_age: bool,
    on_progress: Callable[[Position], None] | None = None,
    metrics: Metrics | None = None,
) -> Tally:
    """Reprocess a stretch with the live guards (ledger dedupe, `sent IS NULL`, freshness unless
    ignored). The live checkpoint is never moved by a replay."""
    store = Store(settings)
    _lead(store, "replay")
    metrics = metrics or Metrics()
    dispatcher = make_dispatcher(settings, metrics)
    tally = Tally()
    mode = RunMode(ignore_age=ignore_age, stop_at_end=True, on_progress=on_progress)
    start = Checkpoint(span.start)
    recipients = RecipientLookup(settings)
    parts = LoopParts(
        DryRun(store) if dry_run else KeepLivePosition(store),
        WouldSend(dispatcher.sink_name) if dry_run else dispatcher,
        recipients,
        metrics,
        Health(stall_after=3600),
        SYSTEM_CLOCK,
        tally,
    )
    try:
        session = Session(settings, parts, open_source(settings, start, blocking=False, end=span.end), start, mode)
        session.run(threading.Event())
    finally:
        dispatcher.close()
        store.close()
        recipients.close()
    return tally
