"""What the look-up says about a row besides an envelope."""

from __future__ import annotations

from dataclasses import dataclass

from cdc_offload.model import Reason


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not answerable yet, and the answer is still coming: ask again in a later round. IOMAD writes
    the user's `company_users` row (their department, so their managers) several transactions after
    the outbox row; until it is on the replica the managers cannot be known."""

    waiting_for: str = "company_users"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a row is left to Moodle, with one sentence naming the problem and the fix. The sentence
    is fixed text: never an address, a name, a value from the row."""

    reason: Reason
    problem: str


class Refused(Exception):
    """Raised inside the rules to stop at the first reason a row cannot be sent as IOMAD would."""

    def __init__(self, reason: Reason, problem: str) -> None:
        super().__init__(problem)
        self.refusal = Refusal(reason, problem)
