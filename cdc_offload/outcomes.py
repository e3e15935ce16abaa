"""What a committed round says to the operator: metrics, one log line per row, the run's tally."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdc_offload import logs
from cdc_offload.metrics import Metrics
from cdc_offload.model import Resolution, Status


@dataclass
class Tally:
    """Outcomes of one run (the demo and `replay` print it)."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    already_done: int = 0

    def add(self, resolutions: Iterable[Resolution]) -> None:
        for r in resolutions:
            self.outcomes[(r.status.value, r.reason.value)] += 1


def report_committed(final: list[Resolution], round_number: int | None, metrics: Metrics, tally: Tally) -> None:
    """`round_number`: the round these rows were sent in (None: none of them was sent)."""
    if round_number is not None:
        logs.info(
            "batch_committed",
            jobs=len(final),
            offloaded=sum(1 for r in final if r.status is Status.OFFLOADED),
            round=round_number,
        )
    tally.add(final)
    for r in final:
        metrics.jobs.labels(r.status.value, r.reason.value).inc()
        for copy in r.recipients:
            metrics.recipients.labels(copy.recipient.kind.value, copy.status.value).inc()
        logs.info(
            "outbox_row_resolved",
            outbox_id=r.outbox_id,
            user_id=r.userid,
            status=r.status.value,
            reason=r.reason.value,
            position=str(r.position),
            message_id=r.message_id,
        )
