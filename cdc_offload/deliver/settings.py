"""What `deliver` and `events` are configured with, validated before anything connects."""

from __future__ import annotations

from dataclasses import dataclass

from cdc_offload.settings import Dsn, SettingsError, TlsSettings, identifier

# Where each consumer's HTTP server listens unless told (CLI only: None in the settings, as in the
# tests, means no HTTP server), and `events`' threads: it only records SES's notifications.
DELIVER_METRICS_PORT = 9110
EVENTS_METRICS_PORT = 9111
EVENTS_CONCURRENCY = 2


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Both consumers: the queue, the ledger, the threads, the HTTP port."""

    queue_url: str
    writer: Dsn
    state_schema: str = "cdc_offload"
    concurrency: int = 8
    # Long poll per receive; also how long SIGTERM may wait for a receive in progress.
    wait_seconds: int = 20
    # How long a received message stays hidden from other copies of the worker while it is sent.
    visibility_timeout: int = 120
    # A message that could not be finished comes back after this, doubled per receive (max 15 min).
    retry_delay: int = 30
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"

    def __post_init__(self) -> None:
        identifier("--state-schema", self.state_schema)
        if not self.queue_url.startswith(("https://", "http://")):
            raise SettingsError(
                "--queue-url", "expected the queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/1234/q"
            )
        if self.concurrency < 1:
            raise SettingsError("--concurrency", "must be at least 1")
        if not 0 <= self.wait_seconds <= 20:
            raise SettingsError("--wait-seconds", "SQS long-polls 0 to 20 seconds")
        if not 10 <= self.visibility_timeout <= 43_200:
            raise SettingsError("--visibility-timeout", "must be 10 s to 12 h (SQS's limit)")
        if self.retry_delay < 1:
            raise SettingsError("--retry-delay", "must be at least 1 second")

    def backoff(self, receive_count: int) -> int:
        return int(min(900, self.retry_delay * 2 ** max(0, min(receive_count - 1, 10))))


@dataclass(frozen=True, slots=True)
class DeliverSettings:
    consumer: ConsumerSettings
    # The site's no-reply address: the From of copies whose template names no sender.
    sender: str
    configuration_set: str | None = None
    # Sends per second for all threads together; None: the account's MaxSendRate from SES.
    send_rate: float | None = None
    # Tries of one copy within one receive when SES throttles or cannot be reached.
    send_attempts: int = 5
    # How long to hold every message back once SES says the 24-hour quota is used up.
    quota_pause: float = 900.0

    def __post_init__(self) -> None:
        for option, value in (("--from", self.sender), ("--configuration-set", self.configuration_set)):
            if value and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise SettingsError(option, "must be one line without control characters")
        if "@" not in self.sender:
            raise SettingsError("--from", "a verified sender address, e.g. no-reply@academy.example")
        if self.send_rate is not None and self.send_rate <= 0:
            raise SettingsError("--send-rate", "must be a positive number of sends per second")
        if self.send_attempts < 1:
            raise SettingsError("--send-attempts", "must be at least 1")
        if self.quota_pause < 1:
            raise SettingsError("--quota-pause", "must be at least 1 second")


# Each option of `deliver` and `events` that sets a field, and that field: the option's default is
# the field's (see cdc_offload.settings.OPTION_FIELDS for `run`'s). `--concurrency` is `deliver`'s
# here; `events` declares EVENTS_CONCURRENCY above.
CONSUMER_OPTION_FIELDS: dict[str, tuple[type, str]] = {
    "--writer-ssl-verify-identity": (TlsSettings, "verify_identity"),
    "--state-schema": (ConsumerSettings, "state_schema"),
    "--concurrency": (ConsumerSettings, "concurrency"),
    "--wait-seconds": (ConsumerSettings, "wait_seconds"),
    "--visibility-timeout": (ConsumerSettings, "visibility_timeout"),
    "--retry-delay": (ConsumerSettings, "retry_delay"),
    "--metrics-host": (ConsumerSettings, "metrics_host"),
    "--configuration-set": (DeliverSettings, "configuration_set"),
    "--send-rate": (DeliverSettings, "send_rate"),
    "--send-attempts": (DeliverSettings, "send_attempts"),
    "--quota-pause": (DeliverSettings, "quota_pause"),
}
