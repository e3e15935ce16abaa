"""The invariant checked after every fault scenario, from the outside: what AWS holds and what the
outbox holds, never what the sidecar says about itself.

For every candidate outbox row: AWS accepted it and the row is suppressed, or AWS did not and the
row is still unsent in the outbox for Moodle. Never neither (that row is lost). Duplicates are
counted, not hidden: a row AWS holds twice, a row AWS holds that is also still queued for Moodle
(Moodle will send it again), and a row the ledger says we raced.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_offload.demo.stack import MoodleDatabase


def accepted_by_sqs(queue_url: str) -> Counter[int]:
    """How many times each outbox id is in the queue, read from moto's own state (moto runs in the
    test process). A FIFO queue's dedup id makes a resend inside five minutes a no-op there, as in
    AWS; nothing is received or deleted, so the queue is left as the sidecar left it."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(queue_url.rstrip("/").rsplit("/", 1)[1])
    counts: Counter[int] = Counter()
    for message in list(queue._messages):
        counts[int(json.loads(message.body)["outbox_id"])] += 1
    return counts


class SqsReceipts:
    """Every message moto's SQS took in from a SendMessage(Batch), per queue and outbox id, counted
    as it arrives and before a FIFO queue's dedup id turns a resend into a no-op: what AWS received,
    which the queue's contents (`accepted_by_sqs`) cannot show. Read from moto, never from our logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[int]] = {}

    def record(self, queue_name: str, body: str) -> None:
        outbox_id = int(json.loads(body)["outbox_id"])
        with self._lock:
            self._counts.setdefault(queue_name, Counter())[outbox_id] += 1

    def of(self, queue_url: str) -> Counter[int]:
        with self._lock:
            return Counter(self._counts.get(queue_url.rstrip("/").rsplit("/", 1)[1], Counter()))


def record_sqs_receipts() -> tuple[SqsReceipts, Callable[[], None]]:
    """Counts every message moto's queues take in (moto runs in the test process). Returns the
    receipts and an undo function."""
    from moto.sqs.models import Queue

    receipts = SqsReceipts()
    original = Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        receipts.record(self.name, message.body)
        original(self, message)

    Queue.add_message = add_message  # type: ignore[method-assign]

    def undo() -> None:
        Queue.add_message = original  # type: ignore[method-assign]

    return receipts, undo


@dataclass
class Verdict:
    candidates: int
    offloaded: list[int] = field(default_factory=list)
    left_for_moodle: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    accepted_twice: dict[int, int] = field(default_factory=dict)
    accepted_and_queued: list[int] = field(default_factory=list)
    raced: list[int] = field(default_factory=list)
    strangers: list[int] = field(default_factory=list)
    # What the ledger says about each row that is not a clean offload (for the failure message).
    ledger_of_odd_rows: Counter[str] = field(default_factory=Counter)

    @property
    def duplicate_ids(self) -> set[int]:
        """The rows a user gets (or will get) more than once."""
        return set(self.accepted_twice) | set(self.accepted_and_queued) | set(self.raced)

    @property
    def duplicates(self) -> int:
        """Emails a user gets more than once (or would, once Moodle's cron runs)."""
        return sum(n - 1 for n in self.accepted_twice.values()) + len(self.accepted_and_queued) + len(self.raced)

    def numbers(self) -> dict[str, int]:
        return {
            "candidates": self.candidates,
            "offloaded": len(self.offloaded),
            "left_for_moodle": len(self.left_for_moodle),
            "lost": len(self.lost),
            "duplicates": self.duplicates,
            "accepted_twice": sum(n - 1 for n in self.accepted_twice.values()),
            "accepted_and_still_queued": len(self.accepted_and_queued),
            "raced": len(self.raced),
        }

    def __repr__(self) -> str:
        return f"Verdict({self.numbers()}, ledger of odd rows: {dict(self.ledger_of_odd_rows)})"

    def assert_nothing_lost(self) -> None:
        assert not self.lost, f"{len(self.lost)} rows lost (not accepted by AWS, not left for Moodle): {self.lost[:20]}"
        assert not self.strangers, f"AWS holds rows that were never candidates: {self.strangers[:20]}"


def check(moodle: MoodleDatabase, candidates: list[int], accepted: Counter[int], schema: str) -> Verdict:
    connection = moodle.admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, sent FROM {moodle.prefix}email")
            outbox = {int(r[0]): r[1] for r in cursor.fetchall()}
            try:
                cursor.execute(f"SELECT outbox_id, CONCAT(status, '/', reason) FROM `{schema}`.ledger")
                ledger = {int(r[0]): str(r[1]) for r in cursor.fetchall()}
            except Exception:  # noqa: BLE001 - no state schema yet: no ledger
                ledger = {}
    finally:
        connection.close()
    verdict = Verdict(candidates=len(candidates))
    wanted = set(candidates)
    verdict.strangers = sorted(set(accepted) - wanted)
    for outbox_id in candidates:
        times = accepted.get(outbox_id, 0)
        unsent = outbox_id in outbox and outbox[outbox_id] is None
        if times and not unsent:
            verdict.offloaded.append(outbox_id)
        elif not times and unsent:
            verdict.left_for_moodle.append(outbox_id)
        elif times and unsent:
            verdict.accepted_and_queued.append(outbox_id)
            verdict.ledger_of_odd_rows[ledger.get(outbox_id, "absent")] += 1
        else:
            verdict.lost.append(outbox_id)
            verdict.ledger_of_odd_rows[ledger.get(outbox_id, "absent")] += 1
        if times > 1:
            verdict.accepted_twice[outbox_id] = times
        if ledger.get(outbox_id, "").startswith("raced/"):
            verdict.raced.append(outbox_id)
    return verdict


def report(scenario: str, **numbers: Any) -> None:
    """One line per scenario for the issue note: printed, and appended to CDC_OFFLOAD_FAULT_REPORT."""
    line = json.dumps({"scenario": scenario, **numbers, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"FAULT-REPORT {line}")
    target = os.environ.get("CDC_OFFLOAD_FAULT_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def fast_moto_queue_counts() -> Any:
    """moto 5.x computes ApproximateNumberOfMessages* (a scan of the whole queue, with a clock call
    per message) on every SendMessage, so sending into a queue of thousands slows quadratically
    (measured: 200 batches of 10 into a standard queue, 74 s; FIFO, 319 s). The fault scenarios
    never receive, so every message is visible and none is delayed: these O(1) counts are exact
    for them. Returns an undo function."""
    from moto.sqs.models import Queue

    names = (
        "approximate_number_of_messages",
        "approximate_number_of_messages_not_visible",
        "approximate_number_of_messages_delayed",
    )
    saved = {name: Queue.__dict__[name] for name in names}
    Queue.approximate_number_of_messages = property(lambda self: len(self._messages))  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_not_visible = property(lambda self: 0)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_delayed = property(lambda self: 0)  # type: ignore[assignment,method-assign]

    def undo() -> None:
        for name, value in saved.items():
            setattr(Queue, name, value)

    return undo
