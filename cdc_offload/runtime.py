"""Builds the parts from `Settings` and runs the pipeline: what `run` (and the demo) call."""

from __future__ import annotations

import errno
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cdc_offload import logs
from cdc_offload.clock import SYSTEM_CLOCK, Clock
from cdc_offload.delivery_ledger import recipients_of
from cdc_offload.dispatch import CircuitBreaker, Dispatcher
from cdc_offload.errors import FailClosed, ShutdownIncomplete, StartupError
from cdc_offload.health import Health
from cdc_offload.http import OperatorServer
from cdc_offload.metrics import Metrics
from cdc_offload.model import Checkpoint
from cdc_offload.outcomes import Tally
from cdc_offload.pipeline import Pipeline, Sources
from cdc_offload.recipients.lookup import RecipientLookup
from cdc_offload.session import LoopParts, RunMode
from cdc_offload.settings import Settings
from cdc_offload.sinks import Sink
from cdc_offload.source import ProcessSource, Source, current_end, open_source, process_supported, start_fork_server
from cdc_offload.store import Store, ledger_query

SWITCH_INTERVAL = 0.0005
EXIT_OK = 0
EXIT_PREFLIGHT = 1
EXIT_FAIL_CLOSED = 3
# Stopped with rows AWS accepted but the primary would not let us suppress (logged, counted).
EXIT_UNSUPPRESSED = 4


def _fail_closed(runtime: Runtime, stop: threading.Event, linger: float, code: int) -> int:
    runtime.metrics.fail_closed.set(1)
    runtime.health.role = "stopped"
    stop.wait(linger)
    return code


def make_sink(settings: Settings) -> Sink:
    if settings.sink.kind == "ses":
        from cdc_offload.sinks.ses import SesSink

        return SesSink(settings.sink)
    from cdc_offload.sinks.sqs import SqsSink

    return SqsSink(settings.sink)


def make_dispatcher(settings: Settings, metrics: Metrics, clock: Clock = SYSTEM_CLOCK) -> Dispatcher:
    """The sink behind the circuit breaker, as the options say (`run` and `replay` alike)."""
    breaker = CircuitBreaker(settings.sink.breaker_failures, settings.sink.breaker_cooldown, clock)
    sink = make_sink(settings)
    if getattr(sink, "send_rate_unknown", False):
        metrics.ses_send_rate_unknown.inc()
    return Dispatcher(sink, breaker, metrics)


def source_factory(settings: Settings, start: Checkpoint) -> Source:
    if process_supported():
        return ProcessSource(settings, start, open_source)
    return open_source(settings, start)


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    health: Health
    pipeline: Pipeline
    dispatcher: Dispatcher
    server: OperatorServer | None


def build(
    settings: Settings,
    mode: RunMode | None = None,
    metrics: Metrics | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Runtime:
    metrics = metrics or Metrics()
    health = Health(max(5.0, settings.read_timeout + 2 * settings.heartbeat), clock)
    dispatcher = make_dispatcher(settings, metrics, clock)
    store = Store(settings, clock)
    parts = LoopParts(store, dispatcher, RecipientLookup(settings), metrics, health, clock, Tally())
    pipeline = Pipeline(settings, store, parts, Sources(source_factory, lambda: current_end(settings.source)), mode)
    server = None
    if settings.metrics_port is not None:
        server = OperatorServer(
            (settings.metrics_host, settings.metrics_port),
            metrics,
            health,
            lambda userid: ledger_query(settings.writer, settings.state_schema, userid=userid),
            lambda ids: [asdict(r) for r in recipients_of(settings.writer, settings.state_schema, ids)],
        )
    return Runtime(settings, metrics, health, pipeline, dispatcher, server)


def run_forever(
    settings: Settings,
    stop: threading.Event,
    preflight: Callable[[], bool] = lambda: True,
    linger: float = 0.0,
) -> int:
    """Serve HTTP, check the servers, run until `stop`. When it cannot go on safely it says so
    on /metrics (`cdc_offload_fail_closed` 1) for `linger` seconds, so an alert can fire before
    the non-zero exit; Moodle sends everything meanwhile."""
    # The binlog reader is a CPU-bound thread; the AWS calls are I/O threads that need the GIL for
    # a moment when each answer arrives. At the default 5 ms switch interval those moments queue
    # up behind the reader and a round of 50 calls took ~4x its network time (measured).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        runtime = build(settings)
    except StartupError as error:
        logs.error("cannot_start", problem=str(error))
        return EXIT_PREFLIGHT
    except OSError as error:
        if error.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        logs.error(
            "cannot_start",
            problem=f"cannot listen on {settings.metrics_host}:{settings.metrics_port} ({error.strerror}): "
            "give --metrics-port a free port, or stop what holds it",
        )
        return EXIT_PREFLIGHT
    if process_supported():
        start_fork_server(wait=True)
    if runtime.server is not None:
        runtime.server.start()
        logs.info("http_listening", port=runtime.server.server_address[1])
    try:
        if not preflight():
            return _fail_closed(runtime, stop, linger, EXIT_PREFLIGHT)
        runtime.pipeline.run(stop)
        logs.info("stopped")
        return EXIT_OK
    except FailClosed as error:
        logs.error("fail_closed", problem=str(error))
        return _fail_closed(runtime, stop, linger, EXIT_FAIL_CLOSED)
    except ShutdownIncomplete:
        # Already said in one log line (`exit_with_unsuppressed_rows`), with the count.
        return EXIT_UNSUPPRESSED
    finally:
        runtime.dispatcher.close()
        if runtime.server is not None:
            runtime.server.shutdown()
