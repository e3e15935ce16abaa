"""SES v2: SendEmail per message, HTML with a plain-text alternative, at the account's rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3

from cdc_offload.model import Delivery, Job
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks import TOO_LARGE
from cdc_offload.sinks.aws import BoundedCalls, client_config
from cdc_offload.sinks.message import email_parts

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# SES's limit for a whole message (after encoding); the base64 of our parts is ~4/3 of them.
MAX_BYTES = 40 * 1024 * 1024 * 3 // 4


class RateLimiter:
    """A token bucket at `rate` sends per second, shared by the pool's threads."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)  # pacing to the account's send rate, not waiting on a race


def account_send_rate(client: SESV2Client) -> float:
    try:
        quota = client.get_account().get("SendQuota", {})
        return float(quota.get("MaxSendRate") or 0.0)
    except Exception:  # noqa: BLE001 - without the figure we pace by the configured concurrency alone
        return 0.0


class SesSink:
    name = "ses"

    def __init__(self, settings: SinkSettings, client: SESV2Client | None = None) -> None:
        assert settings.ses_from is not None
        self._sender = settings.ses_from
        self._configuration_set = settings.ses_configuration_set
        self._client: SESV2Client = client or boto3.client("sesv2", config=client_config(settings))
        rate = account_send_rate(self._client)
        self._limiter = RateLimiter(rate)
        self._calls = BoundedCalls(settings.concurrency, settings.deadline)
        # At the account's send rate, half the deadline's worth of messages per round.
        self.round_limit = max(1, int(rate * settings.deadline / 2)) if rate > 0 else settings.concurrency * 8

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        refused: list[Delivery] = []
        sendable: list[Job] = []
        for job in jobs:
            if email_parts(job).size > MAX_BYTES:
                refused.append(Delivery(job.outbox.id, accepted=False, error_code=TOO_LARGE))
            else:
                sendable.append(job)
        return refused + self._calls.run(sendable, self._send, lambda job: [job.outbox.id])

    def _send(self, job: Job) -> list[Delivery]:
        parts = email_parts(job)
        request: dict[str, Any] = {
            "FromEmailAddress": self._sender,
            "Destination": {"ToAddresses": [parts.to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": parts.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": parts.html_body, "Charset": "UTF-8"},
                        "Text": {"Data": parts.text_body, "Charset": "UTF-8"},
                    },
                }
            },
            "EmailTags": [{"Name": "outbox_id", "Value": str(job.outbox.id)}],
        }
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        self._limiter.wait()
        response = self._client.send_email(**request)
        return [Delivery(job.outbox.id, accepted=True, message_id=response.get("MessageId"))]

    def close(self) -> None:
        self._calls.close()
