"""Test helpers over real parts: the sandbox MariaDB, moto's HTTP server, the in-process sidecar."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from cdc_offload.clock import SYSTEM_CLOCK, Clock
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.runtime import Runtime, build
from cdc_offload.session import RunMode
from cdc_offload.settings import Settings
from cdc_offload.store import Store


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy or the deadline passes (then fail, naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def init_state(settings: Settings) -> None:
    store = Store(settings)
    store.connect()
    store.ensure_schema()
    store.close()


@dataclass
class Sidecar:
    """The real runtime (pipeline, store, sink, HTTP) in a thread of the test process."""

    settings: Settings
    options: RunMode | None = None
    runtime: Runtime = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None
    # This host's clock as the sidecar sees it (a test moves it against the database's).
    clock: Clock = SYSTEM_CLOCK

    def start(self) -> Sidecar:
        init_state(self.settings)
        self.runtime = build(self.settings, self.options, clock=self.clock)
        if self.runtime.server is not None:
            self.runtime.server.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sidecar", daemon=True)
        self._thread.start()
        wait_for(
            lambda: self.runtime.health.role == "active" and self.runtime.health.healthy(), 30, "the sidecar to lead"
        )
        return self

    def _run(self) -> None:
        try:
            self.runtime.pipeline.run(self._stop)
        except BaseException as error:  # noqa: BLE001 - surfaced to the test by stop()
            self.error = error

    @property
    def tally(self) -> Any:
        return self.runtime.pipeline.tally

    def resolved(self) -> int:
        return int(self.tally.outcomes.total())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the sidecar did not drain within 60 s"
        self.runtime.dispatcher.close()
        if self.runtime.server is not None:
            self.runtime.server.shutdown()
            self.runtime.server.server_close()
        if self.error is not None:
            raise self.error


def sqs_messages(queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue (received and deleted), bodies parsed."""
    import orjson

    client = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    empty_polls = 0
    while empty_polls < 2:
        batch = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not batch:
            empty_polls += 1
            continue
        empty_polls = 0
        found.extend(orjson.loads(m["Body"]) for m in batch)
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return found


def ses_messages() -> list[Any]:
    """What moto's SES recorded as sent (moto runs in this process)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def outbox_rows(moodle: MoodleDatabase) -> dict[int, int | None]:
    """Outbox id → `sent`, for every row still in the outbox."""
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, sent FROM {moodle.prefix}email")
        rows = {int(r[0]): r[1] for r in cursor.fetchall()}
    connection.close()
    return rows


def ledger(moodle: MoodleDatabase, schema: str) -> dict[int, dict[str, Any]]:
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM `{schema}`.ledger")
        names = [d[0] for d in cursor.description]
        rows = {int(r[0]): dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
    connection.close()
    return rows
