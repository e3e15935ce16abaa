"""SQS: SendMessageBatch, ten entries a call, per-entry outcome (Failed can come with HTTP 200)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cdc_offload.model import Delivery, Job
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks import TOO_LARGE
from cdc_offload.sinks.aws import BoundedCalls, client_config, guard_deadlines, make_client
from cdc_offload.sinks.message import sqs_document

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_ENTRIES = 10
# SQS's limit for one message and for a whole batch request.
MAX_BYTES = 1_048_576


class SqsSink:
    name = "sqs"

    def __init__(self, settings: SinkSettings, client: SQSClient | None = None) -> None:
        assert settings.queue_url is not None
        self._queue_url = settings.queue_url
        self._fifo = settings.queue_url.endswith(".fifo")
        self._client: SQSClient = client or make_client("sqs", client_config(settings), settings.queue_url)
        guard_deadlines(self._client)
        self._calls = BoundedCalls(settings.concurrency, settings.deadline)
        # Ten entries a call, `concurrency` calls at once, several waves fit in a deadline.
        self.round_limit = MAX_ENTRIES * settings.concurrency * 4

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        refused: list[Delivery] = []
        batches: list[list[dict[str, Any]]] = []
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        for job in jobs:
            body = sqs_document(job).decode()
            size = len(body.encode())
            if size > MAX_BYTES:
                refused.append(Delivery(job.outbox.id, accepted=False, error_code=TOO_LARGE))
                continue
            if len(batch) == MAX_ENTRIES or batch_bytes + size > MAX_BYTES:
                batches.append(batch)
                batch, batch_bytes = [], 0
            batch.append(self._entry(job, body))
            batch_bytes += size
        if batch:
            batches.append(batch)
        return refused + self._calls.run(batches, self._send, lambda entries: [int(e["Id"]) for e in entries])

    def _entry(self, job: Job, body: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": str(job.outbox.id), "MessageBody": body}
        if self._fifo:
            # One group per user keeps a user's mail in order; the outbox id makes a resend after
            # a crash between "accepted" and "committed" a no-op for five minutes.
            entry["MessageGroupId"] = str(job.outbox.userid)
            entry["MessageDeduplicationId"] = str(job.outbox.id)
        return entry

    def _send(self, entries: list[dict[str, Any]]) -> list[Delivery]:
        response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)  # type: ignore[arg-type]
        results = [
            Delivery(int(ok["Id"]), accepted=True, message_id=ok.get("MessageId"))
            for ok in response.get("Successful", [])
        ]
        results += [
            Delivery(int(failed["Id"]), accepted=False, error_code=str(failed.get("Code") or "Failed"))
            for failed in response.get("Failed", [])
        ]
        answered = {d.outbox_id for d in results}
        # An entry AWS did not mention was not accepted.
        results += [
            Delivery(int(e["Id"]), accepted=False, error_code="Unanswered")
            for e in entries
            if int(e["Id"]) not in answered
        ]
        return results

    def close(self) -> None:
        self._calls.close()
