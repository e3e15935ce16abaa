"""Builds `deliver` and `events` from their settings and runs them until `stop`."""

from __future__ import annotations

import dataclasses
import threading

import boto3

from cdc_offload import logs
from cdc_offload.deliver.consumer import Consumer, run_consumers
from cdc_offload.deliver.metrics import DeliverMetrics, EventMetrics
from cdc_offload.deliver.queue import Queue
from cdc_offload.deliver.recorder import EventRecorder
from cdc_offload.deliver.settings import ConsumerSettings, DeliverSettings
from cdc_offload.deliver.worker import DeliveryWorker, client_config
from cdc_offload.delivery_ledger import DeliveryLedger, recipients_of
from cdc_offload.health import Health
from cdc_offload.http import Exported, OperatorServer
from cdc_offload.store import ledger_query


def _serve(settings: ConsumerSettings, metrics: Exported, health: Health) -> OperatorServer | None:
    """/metrics and /healthz (and /ledger/users/<id>, the same answer the sidecar gives)."""
    if settings.metrics_port is None:
        return None
    server = OperatorServer(
        (settings.metrics_host, settings.metrics_port),
        metrics,
        health,
        lambda userid: ledger_query(settings.writer, settings.state_schema, userid=userid),
        lambda ids: [dataclasses.asdict(r) for r in recipients_of(settings.writer, settings.state_schema, ids)],
    )
    server.start()
    logs.info("http_listening", port=server.server_address[1])
    return server


def _health(settings: ConsumerSettings) -> Health:
    # A long poll returns within wait_seconds even when the queue is empty: a thread quiet for
    # much longer than that is stuck.
    return Health(stall_after=settings.wait_seconds + 30.0)


def run_deliver(settings: DeliverSettings, stop: threading.Event, metrics: DeliverMetrics | None = None) -> int:
    consumer = settings.consumer
    metrics = metrics or DeliverMetrics()
    health = _health(consumer)
    server = _serve(consumer, metrics, health)
    ledger = DeliveryLedger(consumer.writer, consumer.state_schema)
    queue = Queue(consumer.queue_url)
    worker = DeliveryWorker(
        settings, queue, boto3.client("sesv2", config=client_config(consumer.concurrency)), ledger, metrics
    )
    logs.info("delivering", concurrency=consumer.concurrency, send_rate=worker.rate)
    try:
        run_consumers(
            Consumer("deliver", consumer, queue, worker.handle, worker.paused_for), health, metrics.dead_letters, stop
        )
    finally:
        ledger.close()
        if server is not None:
            server.shutdown()
    logs.info("stopped")
    return 0


def run_events(settings: ConsumerSettings, stop: threading.Event, metrics: EventMetrics | None = None) -> int:
    metrics = metrics or EventMetrics()
    health = _health(settings)
    server = _serve(settings, metrics, health)
    ledger = DeliveryLedger(settings.writer, settings.state_schema)
    queue = Queue(settings.queue_url)
    recorder = EventRecorder(settings, queue, ledger, metrics)
    logs.info("recording_events", concurrency=settings.concurrency)
    try:
        run_consumers(Consumer("events", settings, queue, recorder.handle), health, metrics.dead_letters, stop)
    finally:
        ledger.close()
        if server is not None:
            server.shutdown()
    logs.info("stopped")
    return 0
