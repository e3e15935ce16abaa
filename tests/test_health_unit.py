"""What /healthz and /readyz say, on a fake clock: a loop or a reader silent past the stall limit
turns the sidecar unhealthy (the orchestrator restarts it); a standby is ready while connected."""

from __future__ import annotations

from cdc_offload.health import Health
from tests.support.loop_fakes import FakeClock

STALL = 30.0


def test_an_active_sidecar_is_healthy_while_the_loop_ticks_and_the_reader_delivers() -> None:
    clock = FakeClock()
    health = Health(STALL, clock)
    health.role, health.writer_connected = "active", True
    health.reader_alive()
    assert health.healthy() and health.ready()
    clock.advance(STALL - 1)
    health.loop_ticked()
    assert health.healthy(), "a reader heard from within the limit"
    clock.advance(2)
    health.loop_ticked()
    assert not health.healthy() and not health.ready(), "the reader silent past the limit (no heartbeats either)"


def test_a_stuck_loop_is_unhealthy_whatever_its_role() -> None:
    clock = FakeClock()
    health = Health(STALL, clock)
    health.role, health.writer_connected = "standby", True
    assert health.healthy() and health.ready()
    clock.advance(STALL + 1)
    assert not health.healthy()


def test_a_lost_reader_or_writer_is_not_ready() -> None:
    clock = FakeClock()
    health = Health(STALL, clock)
    health.role, health.writer_connected = "active", True
    health.reader_alive()
    health.reader_lost()
    assert not health.ready()
    health.reader_alive()
    health.writer_connected = False
    assert health.healthy() and not health.ready()
