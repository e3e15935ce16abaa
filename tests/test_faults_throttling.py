"""SES throttling and its daily quota, against a stand-in SES v2 endpoint over real HTTP (botocore
parses real error responses, so its own retry behaviour is part of what is tested): a throttled
send slows the pace and is retried within the deadline; a daily-quota answer is never retried."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from cdc_offload.dispatch import CircuitBreaker, Dispatcher
from cdc_offload.metrics import Metrics
from cdc_offload.model import Checkpoint, Job, OutboxRow, Position, UserRow
from cdc_offload.settings import SinkSettings
from cdc_offload.sinks import BREAKER_OPEN, DAILY_QUOTA
from cdc_offload.sinks.ses import OUTBOX_TAG, RECIPIENT_TAG, SesSink
from tests.faults.invariant import report

RATE = "Maximum sending rate exceeded."
QUOTA = "Daily message quota exceeded."


class FakeSes(ThreadingHTTPServer):
    """SES v2 on a loopback port: GetAccount answers a send rate; SendEmail follows `script`
    (one answer per request: 'ok', 'rate' or 'quota', the last repeating)."""

    daemon_threads = True

    def __init__(self, script: list[str], max_send_rate: float = 50.0, held: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.max_send_rate = max_send_rate
        self.sends = 0
        # SES's own record of what it took: (outbox_id tag, recipient_index tag, To) per accepted send.
        self.accepted: list[tuple[str, str, str]] = []
        # The first `held` SendEmails get no answer until `release` is set (SES slow to answer).
        self.held = held
        self.waiting = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def answer(self) -> tuple[str, bool]:
        """This request's answer, and whether it waits for `release` first."""
        with self.lock:
            kind = self.script[min(self.sends, len(self.script) - 1)]
            self.sends += 1
            return kind, self.sends <= self.held

    def accept(self, request: dict[str, Any]) -> None:
        tags = {tag["Name"]: tag["Value"] for tag in request.get("EmailTags", [])}
        to = request["Destination"]["ToAddresses"][0]
        with self.lock:
            self.accepted.append((tags.get(OUTBOX_TAG, "?"), tags.get(RECIPIENT_TAG, "?"), to))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeSes

    def do_GET(self) -> None:
        self._json(200, {"SendQuota": {"MaxSendRate": self.server.max_send_rate, "Max24HourSend": 1000}})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        kind, held = self.server.answer()
        if held:
            with self.server.lock:
                self.server.waiting += 1
            self.server.release.wait(120)  # the test's deadline: never hang a run
        if kind == "ok":
            self.server.accept(request)
            self._json(200, {"MessageId": f"fake-{next(self.server._ids)}"})
        else:
            # SES reports both limits as throttling; only the text tells the daily quota apart.
            self._json(429, {"message": RATE if kind == "rate" else QUOTA}, "TooManyRequestsException")

    def _json(self, status: int, body: object, error_type: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


def _fake(script: list[str], rate: float = 50.0, held: int = 0) -> Iterator[FakeSes]:
    server = FakeSes(script, rate, held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _jobs(count: int) -> list[Job]:
    start = Checkpoint(Position("binlog.000001", 4))
    return [
        Job(
            OutboxRow(i, 1000 + i, "user_create", None, 0, 1, "Your account", "<p>password: x</p>"),
            UserRow(1000 + i, f"u{i}", "Ada", "Lovelace", f"u{i}@example.org", "manual", False, False),
            start,
            0,
        )
        for i in range(1, count + 1)
    ]


def _sink(server: FakeSes, deadline: float = 5.0) -> SesSink:
    settings = SinkSettings(kind="ses", ses_from="no-reply@academy.example", deadline=deadline, concurrency=4)
    client = boto3.client(
        "sesv2",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=SesSink.client_config(settings),
    )
    return SesSink(settings, client)


@pytest.fixture
def throttling_ses() -> Iterator[FakeSes]:
    # Every other send is throttled at first, then SES keeps up.
    yield from _fake(["ok", "rate", "ok", "rate", "rate", "ok", "rate"] + ["ok"] * 100)


@pytest.fixture
def quota_ses() -> Iterator[FakeSes]:
    yield from _fake(["quota"])


@pytest.mark.slow
def test_throttling_slows_down_and_every_message_still_goes(throttling_ses: FakeSes) -> None:
    sink = _sink(throttling_ses)
    before = sink.rate
    deliveries = sink.deliver(_jobs(20))
    sink.close()
    assert all(d.accepted for d in deliveries), [d.error_code for d in deliveries if not d.accepted]
    assert len(deliveries) == 20
    throttled = throttling_ses.sends - 20
    assert throttled == 4, "each throttled send was retried once it was its turn again"
    assert sink.rate < before, "the pace went down after the throttling"
    report("SES throttled (4 of 24 sends)", accepted=20, fell_back=0, retries=throttled, rate_after=sink.rate)


def test_daily_quota_is_not_retried_and_opens_the_breaker(quota_ses: FakeSes) -> None:
    sink = _sink(quota_ses)
    dispatcher = Dispatcher(sink, CircuitBreaker(threshold=1, cooldown=60.0), Metrics())
    first = dispatcher.deliver(_jobs(5))
    assert quota_ses.sends == 5, "one request per message: botocore did not retry, nor did we"
    assert {d.error_code for d in first} == {DAILY_QUOTA} and not any(d.accepted for d in first)
    second = dispatcher.deliver(_jobs(5))
    assert quota_ses.sends == 5, "the open breaker sends nothing more"
    assert {d.error_code for d in second} == {BREAKER_OPEN}
    dispatcher.close()
    report("SES daily quota exhausted", requests=quota_ses.sends, retried=0, fell_back=10, breaker="open")
