"""What the fault scenarios share: a state schema and a starting checkpoint before the first
subprocess starts, queue creation, and waiting until every candidate row has a ledger entry."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import boto3

from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import Settings, SinkSettings
from cdc_offload.source.server_facts import current_end
from cdc_offload.store import Store
from tests.support import ledger, wait_for

_queues = itertools.count(1)


def make_queue(fifo: bool, label: str = "faults") -> str:
    name = f"{label}-{next(_queues)}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    return str(boto3.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def settings_for(moodle: MoodleDatabase, queue_url: str, **overrides: Any) -> Settings:
    return moodle.settings(SinkSettings(queue_url=queue_url), **overrides)


def prepare(settings: Settings) -> None:
    """The state schema, and a checkpoint at the binlog's end now: rows created from here on are
    the scenario's, whenever the first subprocess gets to read them."""
    store = Store(settings)
    store.connect()
    try:
        store.ensure_schema()
        if store.load_checkpoint() is None:
            assert store.try_acquire_lock(), "no other instance may run while a scenario prepares"
            store.commit([], current_end(settings.source))
    finally:
        store.close()


def handled(moodle: MoodleDatabase, schema: str, outbox_ids: Iterable[int]) -> bool:
    recorded = ledger(moodle, schema)
    # A `claimed` row is not settled yet: AWS's answer (or the restart's resume) decides it.
    return all(i in recorded and recorded[i]["status"] != "claimed" for i in outbox_ids)


def wait_handled(moodle: MoodleDatabase, schema: str, outbox_ids: list[int], timeout: float = 60.0) -> None:
    wait_for(lambda: handled(moodle, schema, outbox_ids), timeout, f"{len(outbox_ids)} rows in the ledger")


class Upload:
    """Users created from a thread of their own while the test injects faults: IOMAD-style (12
    autocommit transactions each) or in bulk transactions of `bulk` users."""

    def __init__(self, moodle: MoodleDatabase, count: int, start: int, bulk: int = 0, pace: float = 0.0) -> None:
        import threading

        self._moodle = moodle
        self._count = count
        self._start = start
        self._bulk = bulk
        self._pace = pace
        self.outbox_ids: list[int] = []
        self.created_at: dict[int, float] = {}  # outbox id -> monotonic time its transaction committed
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="upload", daemon=True)

    def start(self) -> Upload:
        self._thread.start()
        return self

    def _run(self) -> None:
        import time

        from cdc_offload.demo.moodle import create_user_iomad, create_users_bulk, make_users

        try:
            admin = self._moodle.admin()
            users = make_users(self._count, start=self._start)
            step = self._bulk or 1
            for first in range(0, len(users), step):
                if self._bulk:
                    ids = [o for _, o in create_users_bulk(admin, users[first : first + step])]
                else:
                    ids = [create_user_iomad(admin, users[first])[1]]
                now = time.monotonic()
                self.created_at.update((i, now) for i in ids)
                self.outbox_ids.extend(ids)
                if self._pace:
                    time.sleep(self._pace)  # the uploader's pace, not a wait on a condition
            admin.close()
        except BaseException as error:  # noqa: BLE001 - surfaced by join()
            self.error = error

    def created(self) -> int:
        return len(self.outbox_ids)

    def join(self, timeout: float = 120.0) -> list[int]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the upload did not finish"
        if self.error is not None:
            raise self.error
        return self.outbox_ids
