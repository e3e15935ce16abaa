"""Fault-injection hooks the crash and pause tests name: die, or freeze, at an exact instruction."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "CDC_OFFLOAD_CRASH_AT"
PAUSE_ENV = "CDC_OFFLOAD_PAUSE_AT"


def crash_point(name: str) -> None:
    """Die here, as abruptly as a power cut, when the tests ask for it (CDC_OFFLOAD_CRASH_AT), or
    freeze here as a stalled VM would (CDC_OFFLOAD_PAUSE_AT: SIGSTOP to ourselves; whoever sends
    SIGCONT lets this instance go on from exactly this point)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == name:
        os.kill(os.getpid(), signal.SIGSTOP)
