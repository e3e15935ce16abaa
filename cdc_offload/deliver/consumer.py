"""The loop both consumers run: `concurrency` threads, each long-polling the queue and handling
what it receives one message at a time, until `stop`. A message received but not started when
`stop` comes is handed straight back to the queue, so SIGTERM delays no mail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from cdc_offload import logs
from cdc_offload.deliver.queue import Queue, Received
from cdc_offload.deliver.settings import ConsumerSettings
from cdc_offload.health import Health

DEAD_LETTER_POLL = 30.0


@dataclass(frozen=True)
class Consumer:
    """What one kind of consumer (deliver, events) does with each message of its queue."""

    name: str
    settings: ConsumerSettings
    queue: Queue
    handle: Callable[[Received], None]
    # How long to hold back before the next receive (SES's daily quota spent); 0 to go on.
    paused_for: Callable[[], float] = lambda: 0.0


def run_consumers(consumer: Consumer, health: Health, dead_letters: Gauge, stop: threading.Event) -> None:
    name, queue = consumer.name, consumer.queue
    health.role = "active"
    health.writer_connected = True
    threads = [
        threading.Thread(target=_consume, args=(consumer, health, stop), name=f"{name}-{n}")
        for n in range(consumer.settings.concurrency)
    ]
    for thread in threads:
        thread.start()
    redrive = _redrive(queue)
    while not stop.is_set():
        health.loop_ticked()
        if redrive is not None:
            try:
                dead_letters.labels(name).set(queue.dead_letter_depth(redrive))
            except Exception as error:  # noqa: BLE001 - a missed reading is retried at the next poll
                logs.warning("dead_letter_depth_unknown", queue=name, error=type(error).__name__)
        stop.wait(DEAD_LETTER_POLL)
    for thread in threads:
        thread.join()
    health.role = "stopped"


def _redrive(queue: Queue) -> str | None:
    try:
        policy = queue.redrive_policy()
    except Exception as error:  # noqa: BLE001 - reported, and the consumer still works
        logs.warning("redrive_policy_unknown", error=type(error).__name__)
        return None
    if policy is None:
        logs.warning(
            "no_redrive_policy",
            problem="the queue has no redrive policy: a message that can never be sent is retried forever",
            fix="give the queue a dead-letter queue with maxReceiveCount (README, 'Deploying the delivery worker')",
        )
        return None
    logs.info("redrive_policy", max_receives=policy[1])
    return policy[0]


def _consume(consumer: Consumer, health: Health, stop: threading.Event) -> None:
    settings, queue = consumer.settings, consumer.queue
    while not stop.is_set():
        held = consumer.paused_for()
        if held > 0:
            health.reader_alive()  # holding back on purpose (SES's daily quota) is not a stall
            stop.wait(min(held, 5.0))
            continue
        try:
            # One message a receive: a message waiting behind a slow one (throttled, a long row)
            # would sit out its visibility timeout in this thread while the others idle.
            batch = queue.receive(settings.visibility_timeout, wait=settings.wait_seconds, limit=1)
        except Exception as error:  # noqa: BLE001 - SQS unreachable: try again shortly, never exit
            logs.warning("receive_failed", error=type(error).__name__)
            stop.wait(2.0)
            continue
        health.reader_alive()
        received_at = time.monotonic()
        for position, message in enumerate(batch):
            # Stopping, or the batch's visibility half gone: the rest go back to the queue now.
            if stop.is_set() or time.monotonic() - received_at > settings.visibility_timeout / 2:
                for unstarted in batch[position:]:
                    queue.retry_later(unstarted, 0)
                break
            try:
                consumer.handle(message)
            except Exception as error:  # noqa: BLE001 - the message comes back after its visibility timeout
                logs.error("message_failed", sqs_message_id=message.message_id, error=type(error).__name__)
