"""SES v2: SendEmail per message, HTML with a plain-text alternative, at the account's rate."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions

from cdc_offload import logs
from cdc_offload.model import Delivery, Job, Recipient, RecipientOutcome, RecipientStatus
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks import DAILY_QUOTA, TOO_LARGE, UNREACHABLE
from cdc_offload.sinks.aws import BoundedCalls, attempt_deadline, client_config, guard_deadlines, make_client
from cdc_offload.sinks.message import EmailParts, email_copies

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# SES's limit for a whole message (after encoding); the base64 of our parts is ~4/3 of them.
MAX_BYTES = 40 * 1024 * 1024 * 3 // 4
# What SES answers when the account's send rate (or its daily quota: see `is_daily_quota`) is hit.
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
)


def is_daily_quota(code: str, message: str) -> bool:
    """SES reports the 24-hour quota with a throttling code and the text "Daily message quota
    exceeded": waiting seconds does not help, so it is never retried."""
    return code in THROTTLING_CODES and "daily" in message.lower()


class RateLimiter:
    """A token bucket at `rate` sends per second, shared by the pool's threads. When SES throttles
    anyway it halves the pace (`slow_down`) and creeps back up with every accepted send."""

    def __init__(self, rate: float) -> None:
        self._ceiling = rate
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def slow_down(self) -> None:
        with self._lock:
            current = self.rate if self.rate > 0 else 16.0
            self.rate = max(0.5, current / 2)
            self._interval = 1.0 / self.rate

    def recover(self) -> None:
        with self._lock:
            if not self._interval or self.rate == self._ceiling:
                return
            self.rate = self.rate * 1.05 if self._ceiling <= 0 else min(self._ceiling, self.rate * 1.05)
            if self._ceiling <= 0 and self.rate > 200:
                self.rate, self._interval = 0.0, 0.0
            else:
                self._interval = 1.0 / self.rate

    def reserve(self) -> float:
        """Take the next send slot: the seconds to wait before using it (0: now)."""
        if not self._interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        return slot - now

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)  # pacing to the account's send rate, not waiting on a race


# The pace when the account's own cannot be read: the lowest send rate SES gives an account out of
# the sandbox (a sandbox account cannot send to new users' addresses at all, so it is not this job's).
# Throttling answers halve it further (`RateLimiter.slow_down`).
FALLBACK_SEND_RATE = 14.0


def account_send_rate(client: SESV2Client) -> tuple[float, bool]:
    """The pace to send at (0: not limited), and whether SES said it (False: GetAccount failed)."""
    fallback = FALLBACK_SEND_RATE
    try:
        quota = client.get_account().get("SendQuota", {})
        return float(quota.get("MaxSendRate") or 0.0), True
    except botocore.exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code") or "ClientError")
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            # SES always has GetAccount: this endpoint is a stand-in (moto, LocalStack), which
            # has no send rate to keep to.
            fallback = 0.0
    except (botocore.exceptions.BotoCoreError, OSError) as error:
        code = type(error).__name__
    logs.warning(
        "ses_send_rate_unknown",
        code=code,
        pace_per_second=fallback or "not paced (the endpoint is not SES)",
        fix="allow ses:GetAccount to this role, so sends are paced at the account's own rate",
    )
    return fallback, False


# One outbox row as the sink sends it: its id and every copy (recipient, parts).
_Row = tuple[int, list[tuple[Recipient, EmailParts]]]

# SES message tags on every copy: the `events` consumer finds the exact ledger recipient row by
# them (tag values allow only [A-Za-z0-9_.-], which ids are).
OUTBOX_TAG = "outbox_id"
RECIPIENT_TAG = "recipient_index"


def ses_request(parts: EmailParts, outbox_id: int, index: int, configuration_set: str | None) -> dict[str, Any]:
    """One SendEmail request: HTML with its text alternative, tagged with the copy it is."""
    request: dict[str, Any] = {
        "FromEmailAddress": parts.sender,
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
        "EmailTags": [
            {"Name": OUTBOX_TAG, "Value": str(outbox_id)},
            {"Name": RECIPIENT_TAG, "Value": str(index)},
        ],
    }
    if parts.reply_to:
        request["ReplyToAddresses"] = list(parts.reply_to)
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    return request


class SesSink:
    name = "ses"

    def __init__(self, settings: SinkSettings, client: SESV2Client | None = None) -> None:
        assert settings.ses_from is not None
        self._sender = settings.ses_from
        self._configuration_set = settings.ses_configuration_set
        self._client: SESV2Client = client or make_client("sesv2", self.client_config(settings))
        guard_deadlines(self._client)
        rate, said = account_send_rate(self._client)
        self.send_rate_unknown = not said
        self._limiter = RateLimiter(rate)
        self._calls = BoundedCalls(settings.concurrency, settings.deadline)
        # At the account's send rate, half the deadline's worth of messages per round.
        self.round_limit = max(1, int(rate * settings.deadline / 2)) if rate > 0 else settings.concurrency * 8

    @staticmethod
    def client_config(settings: SinkSettings) -> botocore.config.Config:
        # No botocore retries here: it would retry a daily-quota answer too (same codes). `_send`
        # retries what is worth it, inside the round's deadline.
        no_retries = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
        return client_config(settings).merge(no_retries)

    @property
    def rate(self) -> float:
        """The pace now, in sends per second (0: not limited)."""
        return self._limiter.rate

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        refused: list[Delivery] = []
        sendable: list[_Row] = []
        for job in jobs:
            copies = email_copies(job, self._sender)
            if copies[0][1].size > MAX_BYTES:
                refused.append(Delivery(job.outbox.id, accepted=False, error_code=TOO_LARGE))
            else:
                sendable.append((job.outbox.id, copies))
        return refused + self._calls.run(sendable, self._send, lambda row: [row[0]])

    def _send(self, row: _Row) -> list[Delivery]:
        """Every copy of the row, one SendEmail each, in IOMAD's order. The user's copy decides the
        row: refused, nothing else is sent and Moodle sends them all. A later copy refused ends the
        row's sending, as IOMAD's task does (its remaining copies are `not_sent`, counted)."""
        outbox_id, copies = row
        outcomes: list[RecipientOutcome] = []
        stopped: str | None = None
        for to, parts in copies:
            if stopped is not None:
                outcomes.append(RecipientOutcome(to, RecipientStatus.NOT_SENT, error_code=stopped))
                continue
            request = ses_request(parts, outbox_id, to.index, self._configuration_set)
            message_id, code = self._send_one(request)
            if code is None:
                outcomes.append(RecipientOutcome(to, RecipientStatus.ACCEPTED, message_id=message_id))
                continue
            if not outcomes:
                return [Delivery(outbox_id, accepted=False, error_code=code)]
            outcomes.append(RecipientOutcome(to, RecipientStatus.FAILED, error_code=code))
            stopped = code
        return [Delivery(outbox_id, accepted=True, message_id=outcomes[0].message_id, recipients=tuple(outcomes))]

    def _send_one(self, request: dict[str, Any]) -> tuple[str | None, str | None]:
        """(message id, None) when SES accepted it, else (None, error code); retries what is worth
        it within the round's deadline."""
        attempt = 0
        while True:
            self._limiter.wait()
            try:
                response = self._client.send_email(**request)
            except botocore.exceptions.ClientError as error:
                details = error.response.get("Error", {})
                code, message = str(details.get("Code") or ""), str(details.get("Message") or "")
                if is_daily_quota(code, message):
                    return None, DAILY_QUOTA
                if code not in THROTTLING_CODES:
                    raise
                self._limiter.slow_down()
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
                code = UNREACHABLE  # nothing reached SES: safe to try again
            else:
                self._limiter.recover()
                return response.get("MessageId"), None
            attempt += 1
            pause = random.uniform(0, min(2.0, 0.1 * 2**attempt))  # noqa: S311 - jitter, not crypto
            if time.monotonic() + pause >= attempt_deadline():
                return None, code
            time.sleep(pause)  # backing off a throttled or unreachable SES, within the deadline

    def close(self) -> None:
        self._calls.close()
