"""What both sinks share: boto3's retry configuration, a bounded pool, and a deadline."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from cdc_offload.errors import StartupError
from cdc_offload.model import Delivery
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks import DEADLINE, NO_ANSWER, NOT_ATTEMPTED, UNREACHABLE
from cdc_offload.sinks.region import region_name

T = TypeVar("T")


def client_config(settings: SinkSettings) -> botocore.config.Config:
    # Standard mode retries throttling and 5xx with backoff, and a failed connect (nothing was
    # sent). A read timeout is different: AWS may have accepted the request, and retrying it would
    # send the email twice, so one attempt may use the whole deadline and is not repeated in time.
    return botocore.config.Config(
        # total_max_attempts counts the first request too (max_attempts would mean 3 retries).
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=min(2.0, settings.deadline / 3),
        read_timeout=settings.deadline,
        max_pool_connections=settings.concurrency,
        tcp_keepalive=True,
        # The requests are built by the sinks from typed jobs, and AWS checks them anyway (a
        # refused one is left to Moodle). Checking each against the service model here cost ~0.4 ms
        # of CPU a SendMessageBatch call (of ~2.9), on the process that also reads and commits.
        parameter_validation=False,
    )


def make_client(service: str, config: botocore.config.Config, queue_url: str | None = None) -> Any:
    """A boto3 client in the region the queue URL names, else the environment's (`region.py`); a
    set-up it refuses (no region, a bad endpoint URL, an unknown profile) is one sentence naming the
    fix, not a traceback. (Resolved here, where the client is made: a caller that makes its own
    client with its own region needs none from the environment.)"""
    region = region_name(queue_url)
    try:
        return boto3.client(service, config=config, region_name=region)  # type: ignore[call-overload]
    except botocore.exceptions.BotoCoreError as error:
        raise StartupError(
            f"the AWS {service} client cannot be set up ({error}): check AWS_REGION, AWS_ENDPOINT_URL and AWS_PROFILE"
        ) from None


_call = threading.local()


class NeverStarted(Exception):
    """The round's deadline passed while the call waited for a pool thread: nothing was sent."""


class AttemptAfterDeadline(Exception):
    """An attempt (a botocore retry, or a call that waited for a pool thread) that would start after
    its round's deadline: not sent. The round already left the row to Moodle; a late send that AWS
    accepts would be a duplicate."""


class _Attempt:
    """Whether this call's request may have reached AWS (an answer to it may still come)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


def _refuse_late_attempt(**_: Any) -> None:
    until = getattr(_call, "until", None)
    if until is not None and time.monotonic() >= until:
        raise AttemptAfterDeadline("deadline passed")
    attempt = getattr(_call, "attempt", None)
    if attempt is not None:
        attempt.sent = True


def _note_unsent(caught_exception: BaseException | None = None, **_: Any) -> None:
    # A connection that was never made carried nothing: that attempt cannot be accepted later.
    attempt = getattr(_call, "attempt", None)
    unsent = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)
    if attempt is not None and isinstance(caught_exception, unsent):
        attempt.sent = False


def attempt_deadline() -> float:
    """The monotonic time this call's round gives up (infinity outside a bounded round)."""
    until = getattr(_call, "until", None)
    return float("inf") if until is None else float(until)


def guard_deadlines(client: Any) -> None:
    """Check the round's deadline right before every HTTP attempt of `client`, retries included.
    (botocore hands an exception raised here to its retry checker, which does not retry it.)"""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register("before-send", _refuse_late_attempt)
        events.register("needs-retry", _note_unsent)


# What went wrong, by exception type, in the order checked (a subclass before its base).
_ERROR_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (NeverStarted, NOT_ATTEMPTED),
    (AttemptAfterDeadline, DEADLINE),
    # A read timeout is an HTTPClientError too, but the request went out: AWS may have it.
    (botocore.exceptions.ReadTimeoutError, NO_ANSWER),
    ((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError), UNREACHABLE),
)


def error_code(error: Exception) -> str:
    """A short, content-free name for what went wrong (AWS's own code where there is one)."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code") or "ClientError")
    return next((code for kinds, code in _ERROR_CODES if isinstance(error, kinds)), type(error).__name__)


class BoundedCalls:
    """Runs calls on a fixed pool and stops waiting at the deadline."""

    def __init__(self, concurrency: int, deadline: float) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="aws")
        self._deadline = deadline

    def run(
        self,
        units: Sequence[T],
        call: Callable[[T], list[Delivery]],
        ids_of: Callable[[T], list[int]],
    ) -> list[Delivery]:
        until = time.monotonic() + self._deadline
        attempts = [_Attempt() for _ in units]
        futures = {
            self._pool.submit(self._within, until, call, unit, attempt): (unit, attempt)
            for unit, attempt in zip(units, attempts, strict=True)
        }
        done, late = concurrent.futures.wait(futures, timeout=self._deadline)
        results: list[Delivery] = []
        for future in done:
            error = future.exception()
            if error is None:
                results.extend(future.result())
            else:
                code = error_code(error) if isinstance(error, Exception) else type(error).__name__
                results.extend(Delivery(i, accepted=False, error_code=code) for i in ids_of(futures[future][0]))
        for future in late:
            # AWS may still accept it after this; that (rare, counted) duplicate beats a row
            # that neither we nor Moodle sends.
            # A request that went out and was not answered may still be accepted (`uncertain`);
            # one not started, or whose connection was never made, cannot be.
            unit, attempt = futures[future]
            code = NO_ANSWER if not future.cancel() and attempt.sent else DEADLINE
            results.extend(Delivery(i, accepted=False, error_code=code) for i in ids_of(unit))
        return results

    @staticmethod
    def _within(until: float, call: Callable[[T], list[Delivery]], unit: T, attempt: _Attempt) -> list[Delivery]:
        if time.monotonic() >= until:
            raise NeverStarted("deadline passed before a pool thread was free")
        _call.until = until
        _call.attempt = attempt
        try:
            return call(unit)
        finally:
            _call.until = None
            _call.attempt = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
