"""`deliver`: each SQS message is one outbox row; every recipient gets one SendEmail, tagged with
the outbox id and recipient index (the same tags the sidecar's SES sink sets, so one `events`
consumer serves both shapes). The message is deleted only once SES accepted every copy.

- The pace is the account's MaxSendRate (or --send-rate), one token bucket for all threads;
  throttling halves it and backs off, then it creeps back.
- SES's daily quota is never retried blindly: every thread holds back for --quota-pause, then
  asks SES whether the quota has room again.
- A copy SES accepted is recorded in the ledger before the next one is sent, so a redelivered
  message (a crash, a visibility timeout) skips it: a duplicate needs a crash between SES's
  accept and that write, and is counted.
- No SendEmail starts unless the message stays hidden until that call has surely ended (its wait
  for a token, its timeouts): throttling can slow one copy's tries past the visibility timeout, and
  a second receive would send copies SES is still taking from the first (`lease.py`).
- A message that cannot be finished goes back to the queue with a growing delay; after the redrive
  policy's receives it lands in the dead-letter queue (nothing is dropped here).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions

from cdc_offload import logs
from cdc_offload.deliver.lease import Lease
from cdc_offload.deliver.message import Copy, OutboxMessage, Unreadable, parse
from cdc_offload.deliver.metrics import DeliverMetrics
from cdc_offload.deliver.queue import Queue, Received
from cdc_offload.deliver.settings import DeliverSettings
from cdc_offload.delivery_ledger import DeliveryLedger, LedgerCopy
from cdc_offload.faults import crash_point
from cdc_offload.sinks import DAILY_QUOTA, UNREACHABLE
from cdc_offload.sinks.ses import THROTTLING_CODES, RateLimiter, account_send_rate, is_daily_quota, ses_request

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# A read timeout may hide an accept: not retried within the receive, left to redelivery (counted).
UNANSWERED = "Unanswered"
# The message could not be kept hidden for the next SendEmail: nothing sent, the message left alone.
LEASE_LOST = "lease_lost"

CONNECT_SECONDS = 3
READ_SECONDS = 30
# The longest one SendEmail can stay unanswered with `client_config` (one attempt, no retries).
CALL_SECONDS = CONNECT_SECONDS + READ_SECONDS


def client_config(concurrency: int) -> botocore.config.Config:
    # No botocore retries: it would retry the daily quota too (same error codes). `_send_copy`
    # retries what is worth it; a read timeout is never repeated in place (SES may have accepted).
    return botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
        max_pool_connections=concurrency,
        tcp_keepalive=True,
    )


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str | None
    error_code: str | None = None


class DeliveryWorker:
    def __init__(
        self,
        settings: DeliverSettings,
        queue: Queue,
        ses: SESV2Client,
        ledger: DeliveryLedger,
        metrics: DeliverMetrics,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._ses = ses
        self._ledger = ledger
        self._copies = CopyNotes(ledger)
        self._metrics = metrics
        # SES's own rate unless given; GetAccount refused paces at the conservative fallback (logged there).
        rate = settings.send_rate or account_send_rate(ses)[0]
        if not rate:
            logs.warning("send_rate_unknown", fix="SES did not say its MaxSendRate: give --send-rate")
        self._limiter = RateLimiter(rate)
        metrics.send_rate.set(rate)
        self._quota_lock = threading.Lock()
        self._quota_until = 0.0

    @property
    def rate(self) -> float:
        return self._limiter.rate

    # -- one message --------------------------------------------------------------------------
    def handle(self, received: Received) -> None:
        held = self.paused_for()
        if held > 0:
            # Received just as another thread found the quota used up: back on the queue, untouched.
            self._queue.retry_later(received, int(held) + 1)
            return
        try:
            message = parse(received.body)
        except Unreadable as problem:
            self._metrics.messages.labels("unreadable").inc()
            logs.warning(
                "unreadable_message",
                sqs_message_id=received.message_id,
                receive_count=received.receive_count,
                problem=str(problem),
                fix="left for the queue's redrive policy (dead-letter queue); send only cdc-offload's messages here",
            )
            self._queue.retry_later(received, self._settings.consumer.backoff(received.receive_count))
            return
        done = self._already_sent(message, received)
        if done is None:
            self._retry_later(received, message, "ledger_unavailable")
            return
        lease = Lease(self._queue, received, self._settings.consumer.visibility_timeout)
        for copy in message.copies:
            if done.get(copy.index):
                self._metrics.copies.labels("already_sent").inc()
                continue
            in_doubt = copy.index in done  # an earlier attempt stopped while SES had it
            self._copies.mark(message, copy)
            sent = self._send_copy(message, copy, lease)
            if sent.message_id is None:
                if sent.error_code != UNANSWERED:
                    self._copies.clear(message, copy)
                if sent.error_code == LEASE_LOST:
                    self._lease_lost(received, message, copy)
                    return
                self._metrics.copies.labels("failed").inc()
                self._retry_later(received, message, sent.error_code or "failed", index=copy.index)
                return
            self._metrics.copies.labels("accepted").inc()
            if in_doubt:
                self._metrics.possible_duplicates.inc()
            crash_point("deliver_after_ses_accept")
            self._copies.record(message, copy, sent.message_id)
        crash_point("deliver_before_delete")
        self._queue.delete(received)
        self._metrics.messages.labels("deleted").inc()
        logs.info("outbox_row_delivered", outbox_id=message.outbox_id, copies=len(message.copies))

    def _already_sent(self, message: OutboxMessage, received: Received) -> dict[int, str | None] | None:
        try:
            return self._ledger.sent_copies(message.outbox_id)
        except Exception as error:  # noqa: BLE001 - decided below, logged without content
            logs.warning("ledger_read_failed", outbox_id=message.outbox_id, error=type(error).__name__)
            # A first delivery has sent nothing yet; a redelivery without the ledger could duplicate.
            return {} if received.receive_count == 1 else None

    def _lease_lost(self, received: Received, message: OutboxMessage, copy: Copy) -> None:
        # Not ours any more: SQS may have handed it to another worker, whose copies these now are.
        # Its visibility is left alone (our receipt may no longer name the current delivery).
        self._metrics.copies.labels(LEASE_LOST).inc()
        logs.warning(
            "outbox_row_visibility_lost",
            outbox_id=message.outbox_id,
            index=copy.index,
            receive_count=received.receive_count,
            problem="the message could not be kept hidden while its copy was sent, so it was not sent here",
            fix="check that SQS is reachable and the role may sqs:ChangeMessageVisibility; SQS redelivers it",
        )

    def _retry_later(self, received: Received, message: OutboxMessage, code: str, index: int | None = None) -> None:
        delay = self._settings.consumer.backoff(received.receive_count)
        if code == DAILY_QUOTA:
            delay = int(self._settings.quota_pause)
        self._queue.retry_later(received, delay)
        self._metrics.messages.labels("retry_later").inc()
        logs.warning(
            "outbox_row_retry_later",
            outbox_id=message.outbox_id,
            index=index,
            code=code,
            receive_count=received.receive_count,
            retry_in=delay,
        )

    # -- one copy -----------------------------------------------------------------------------
    def _send_copy(self, message: OutboxMessage, copy: Copy, lease: Lease) -> Sent:
        request = ses_request(
            message.parts(copy, self._settings.sender), message.outbox_id, copy.index, self._settings.configuration_set
        )
        for attempt in range(1, self._settings.send_attempts + 1):
            # Throttling can slow the pace so far that one copy's tries outlast the visibility
            # timeout: the message must stay hidden until this call has surely ended, or a second
            # receive sends the copy again while SES still holds this one.
            pause = self._limiter.reserve()
            if not lease.hold_for(pause + CALL_SECONDS):
                return Sent(None, LEASE_LOST)
            time.sleep(pause)  # pacing to the account's send rate, not waiting on a race
            try:
                response = self._ses.send_email(**request)
            except botocore.exceptions.ClientError as error:
                details = error.response.get("Error", {})
                code, text = str(details.get("Code") or "ClientError"), str(details.get("Message") or "")
                self._metrics.ses_errors.labels(DAILY_QUOTA if is_daily_quota(code, text) else code).inc()
                if is_daily_quota(code, text):
                    self._quota_exhausted()
                    return Sent(None, DAILY_QUOTA)
                if code not in THROTTLING_CODES and not _server_side(error):
                    return Sent(None, code)  # SES refused this copy: retrying now cannot help
                if code in THROTTLING_CODES:
                    self._limiter.slow_down()
                    self._metrics.send_rate.set(self._limiter.rate)
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
                self._metrics.ses_errors.labels(UNREACHABLE).inc()  # nothing reached SES: safe to repeat
            except botocore.exceptions.ReadTimeoutError:
                self._metrics.ses_errors.labels(UNANSWERED).inc()
                return Sent(None, UNANSWERED)
            else:
                self._limiter.recover()
                self._metrics.send_rate.set(self._limiter.rate)
                return Sent(str(response["MessageId"]))
            time.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))  # noqa: S311 - jittered backoff, not a race
        return Sent(None, "Throttling")

    # -- the daily quota ----------------------------------------------------------------------
    def _quota_exhausted(self) -> None:
        with self._quota_lock:
            self._quota_until = time.monotonic() + self._settings.quota_pause
        self._metrics.quota_exhausted.set(1)
        logs.error(
            "ses_daily_quota_exhausted",
            pause_seconds=self._settings.quota_pause,
            fix="raise the account's 24-hour quota in the SES console; messages wait on the queue meanwhile",
        )

    def paused_for(self) -> float:
        """Seconds every thread should hold back before receiving (0: go on). When a quota pause
        ends, SES is asked once whether the quota has room again; if it says no, the pause repeats."""
        with self._quota_lock:
            if not self._quota_until:
                return 0.0
            remaining = self._quota_until - time.monotonic()
            if remaining > 0:
                return remaining
            if self._quota_has_room() is False:
                self._quota_until = time.monotonic() + self._settings.quota_pause
                return self._settings.quota_pause
            self._quota_until = 0.0
        self._metrics.quota_exhausted.set(0)
        logs.info("ses_daily_quota_pause_over")
        return 0.0

    def _quota_has_room(self) -> bool | None:
        try:
            quota: dict[str, Any] = dict(self._ses.get_account().get("SendQuota", {}))
        except Exception:  # noqa: BLE001 - unknown: one send will tell
            return None
        if not quota.get("Max24HourSend"):
            return None
        return float(quota.get("SentLast24Hours", 0)) < float(quota["Max24HourSend"])


def _server_side(error: botocore.exceptions.ClientError) -> bool:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status >= 500


class CopyNotes:
    """What the worker writes about each copy in the delivery ledger. Best effort: a failed write
    costs only an exact count (a duplicate uncounted, or counted when it is none), never a mail."""

    def __init__(self, ledger: DeliveryLedger) -> None:
        self._ledger = ledger

    def mark(self, message: OutboxMessage, copy: Copy) -> None:
        try:
            self._ledger.mark_sending(_ledger_copy(message, copy))
        except Exception as error:  # noqa: BLE001 - only the duplicate count would miss this copy
            logs.warning(
                "ledger_write_failed", outbox_id=message.outbox_id, index=copy.index, error=type(error).__name__
            )

    def clear(self, message: OutboxMessage, copy: Copy) -> None:
        try:
            self._ledger.clear_sending(message.outbox_id, copy.index)
        except Exception as error:  # noqa: BLE001 - the retry would count a duplicate that is none
            logs.warning(
                "ledger_write_failed", outbox_id=message.outbox_id, index=copy.index, error=type(error).__name__
            )

    def record(self, message: OutboxMessage, copy: Copy, ses_message_id: str) -> None:
        try:
            self._ledger.record_sent(_ledger_copy(message, copy), ses_message_id)
        except Exception as error:  # noqa: BLE001 - the mail went; `events` fills the row in by its tags
            logs.warning(
                "ledger_write_failed", outbox_id=message.outbox_id, index=copy.index, error=type(error).__name__
            )


def _ledger_copy(message: OutboxMessage, copy: Copy) -> LedgerCopy:
    return LedgerCopy(message.outbox_id, copy.index, copy.kind, copy.user_id, copy.address)
