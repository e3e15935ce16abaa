"""`events`: SES's notifications (configuration set → SNS → SQS, or an identity's feedback topic)
recorded against the exact ledger row of the copy they are about. Recording is idempotent and
ordered by the event's own timestamp, so redelivered and reordered notifications end in the same
ledger state; the notification is deleted once recorded."""

from __future__ import annotations

from cdc_offload import logs
from cdc_offload.deliver.events import Ignored, Unreadable, parse
from cdc_offload.deliver.metrics import EventMetrics
from cdc_offload.deliver.queue import Queue, Received
from cdc_offload.deliver.settings import ConsumerSettings
from cdc_offload.delivery_event import DeliveryEvent, Outcome
from cdc_offload.delivery_ledger import DeliveryLedger


class EventRecorder:
    def __init__(self, settings: ConsumerSettings, queue: Queue, ledger: DeliveryLedger, metrics: EventMetrics) -> None:
        self._settings = settings
        self._queue = queue
        self._ledger = ledger
        self._metrics = metrics

    def handle(self, received: Received) -> None:
        try:
            event = parse(received.body)
        except Unreadable as problem:
            self._metrics.unreadable.inc()
            logs.warning(
                "unreadable_notification",
                sqs_message_id=received.message_id,
                receive_count=received.receive_count,
                problem=str(problem),
                fix="left for the queue's redrive policy; subscribe only SES event destinations to this queue",
            )
            self._queue.retry_later(received, self._settings.backoff(received.receive_count))
            return
        if isinstance(event, Ignored):
            self._metrics.ignored.inc()
            self._queue.delete(received)
            return
        try:
            matched = self._ledger.record_event(event)
        except Exception as error:  # noqa: BLE001 - the notification comes back; nothing recorded twice
            logs.warning("ledger_write_failed", outcome=event.outcome.value, error=type(error).__name__)
            self._queue.retry_later(received, self._settings.backoff(received.receive_count))
            return
        if matched:
            self._count(event)
        else:
            self._metrics.unmatched.inc()
        self._queue.delete(received)
        logs.info(
            "delivery_event_recorded" if matched else "delivery_event_unmatched",
            outcome=event.outcome.value,
            outbox_id=event.outbox_id,
            index=event.recipient_index,
            detail=event.detail,
        )

    def _count(self, event: DeliveryEvent) -> None:
        self._metrics.events.labels(event.outcome.value).inc()
        if event.outcome is Outcome.BOUNCED and event.bounce_type:
            self._metrics.bounces.labels(event.bounce_type).inc()
        if event.outcome is Outcome.DELIVERED and event.sent_at is not None:
            self._metrics.latency.observe(max(0.0, (event.at - event.sent_at).total_seconds()))
