"""Errors that cross module boundaries."""

from __future__ import annotations


class SourceError(RuntimeError):
    """The binlog stream ended or failed; rebuild it from the committed checkpoint."""


class PositionLost(SourceError):
    """The server no longer has the position we must resume from (purged, or another server)."""


class ReplicaUnreachable(SourceError):
    """The replica's connection failed during the recipient look-up: like the binlog link, the
    session is rebuilt from the checkpoint (the rows are read again, not left to Moodle)."""


class FailClosed(RuntimeError):
    """A condition under which running could lose or duplicate mail: stop, let Moodle send."""


class ShutdownIncomplete(RuntimeError):
    """Stopped with rows AWS accepted that could not be suppressed: Moodle sends them too."""


class StartupError(RuntimeError):
    """The process cannot start as configured. The message is one sentence naming the fix."""
