"""The Prometheus families of `deliver` and `events`, each on a registry of its own (they run as
their own processes). Labels come from fixed sets or AWS's error codes: never an id or address."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from cdc_offload.deliver.events import BOUNCE_TYPES
from cdc_offload.delivery_event import Outcome

MESSAGE_OUTCOMES = ("deleted", "retry_later", "unreadable")
COPY_RESULTS = ("accepted", "already_sent", "failed", "lease_lost")


class DeliverMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "cdc_offload_deliver_messages_total",
            "SQS messages handled: deleted (every copy accepted), retry_later (left on the queue), "
            "unreadable (left for the redrive policy's dead-letter queue).",
            ["outcome"],
            registry=r,
        )
        self.copies = Counter(
            "cdc_offload_deliver_copies_total",
            "Copies (one recipient of a row): accepted by SES, already_sent (a redelivered message's copy "
            "the ledger shows as accepted: not sent again), failed, lease_lost (not sent: the message could not be "
            "kept hidden from other workers meanwhile).",
            ["result"],
            registry=r,
        )
        self.possible_duplicates = Counter(
            "cdc_offload_deliver_possible_duplicates_total",
            "Copies sent again from a redelivered message with no SES message id in the ledger: a crash "
            "between SES's accept and the ledger write may have sent them twice.",
            registry=r,
        )
        self.ses_errors = Counter(
            "cdc_offload_deliver_ses_errors_total", "SendEmail calls SES refused, by error code.", ["code"], registry=r
        )
        self.send_rate = Gauge(
            "cdc_offload_deliver_send_rate", "The pace this worker holds, in sends per second (0: none).", registry=r
        )
        self.quota_exhausted = Gauge(
            "cdc_offload_deliver_quota_exhausted",
            "1 while SES's 24-hour sending quota is used up and this worker holds its messages back.",
            registry=r,
        )
        self.dead_letters = Gauge(
            "cdc_offload_dead_letter_messages",
            "Messages in the dead-letter queue of the queue this process consumes (redrive policy).",
            ["queue"],
            registry=r,
        )
        for outcome in MESSAGE_OUTCOMES:
            self.messages.labels(outcome)
        for result in COPY_RESULTS:
            self.copies.labels(result)


class EventMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "cdc_offload_delivery_events_total",
            "SES events recorded in the ledger, by outcome (sent, delivered, bounced, complained, rejected, delayed).",
            ["outcome"],
            registry=r,
        )
        self.bounces = Counter(
            "cdc_offload_delivery_bounces_total",
            "Bounces recorded, by SES's bounce type (permanent bounces count towards SES's bounce rate).",
            ["bounce_type"],
            registry=r,
        )
        self.latency = Histogram(
            "cdc_offload_delivery_latency_seconds",
            "From SES's accept of a copy to its delivery to the recipient's mail server.",
            buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0),
            registry=r,
        )
        self.unmatched = Counter(
            "cdc_offload_delivery_events_unmatched_total",
            "Notifications without our tags whose SES message id is not in the ledger (another sender's mail).",
            registry=r,
        )
        self.unreadable = Counter(
            "cdc_offload_delivery_events_unreadable_total",
            "Queue messages that are not SES notifications: left for the redrive policy's dead-letter queue.",
            registry=r,
        )
        self.ignored = Counter(
            "cdc_offload_delivery_events_ignored_total",
            "Notifications that say nothing about delivery (Open, Click, subscription confirmations, ...).",
            registry=r,
        )
        self.dead_letters = Gauge(
            "cdc_offload_dead_letter_messages",
            "Messages in the dead-letter queue of the queue this process consumes (redrive policy).",
            ["queue"],
            registry=r,
        )
        for outcome in Outcome:
            self.events.labels(outcome.value)
        for bounce_type in BOUNCE_TYPES:
            self.bounces.labels(bounce_type)
