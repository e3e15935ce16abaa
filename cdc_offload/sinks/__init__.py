"""Delivery to AWS. A sink takes jobs and says, per outbox id, whether AWS accepted it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cdc_offload.model import Delivery, Job

# Error codes a sink reports that are not AWS's own (AWS codes pass through as they come).
# The round's deadline passed before the call's request went out (a retry refused, a connection
# never made): nothing reached AWS.
DEADLINE = "DeadlineExceeded"
# The deadline passed before the call could start: nothing reached AWS.
NOT_ATTEMPTED = "NotAttempted"
UNREACHABLE = "Unreachable"
TOO_LARGE = "MessageTooLarge"
BREAKER_OPEN = "BreakerOpen"
# The request went out and no answer came before the deadline (a read timeout, a call still running):
# AWS may have accepted it, so a row left to Moodle may reach the user twice (`uncertain`).
NO_ANSWER = "NoAnswerByDeadline"
# SES's 24-hour quota is used up: not retried (a retry cannot succeed before the quota rolls).
DAILY_QUOTA = "DailyQuotaExceeded"


class Sink(Protocol):
    name: str
    # Most jobs one call to `deliver` should carry so all of them fit inside the deadline.
    round_limit: int

    def deliver(self, jobs: Sequence[Job]) -> list[Delivery]:
        """One `Delivery` per job, in any order; never raises for an AWS failure."""
        ...

    def close(self) -> None: ...
