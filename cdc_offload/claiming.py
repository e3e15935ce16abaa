"""Who receives each row (IOMAD's task's rules, on the replica), then the claim on the primary
under the email task's lock: the rows AWS gets, the `sent` mark each carries in the outbox, and
the rows settled on the way (left to Moodle, raced, claims a restart cannot resume)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from cdc_offload import logs
from cdc_offload.clock import Clock
from cdc_offload.errors import ReplicaUnreachable
from cdc_offload.faults import crash_point
from cdc_offload.metrics import Metrics
from cdc_offload.model import Envelope, Job, Reason, Recorded, Resolution, Status
from cdc_offload.policy import left_to_moodle
from cdc_offload.settings import Settings
from cdc_offload.sinks.message import envelope
from cdc_offload.staging import Staging
from cdc_offload.store.protocols import ClaimStore

# SQS FIFO drops a resend with the same deduplication id for five minutes: a row claimed before a
# crash is sent again within this margin of it (a no-op if AWS had it), else restored for Moodle.
FIFO_DEDUP_SECONDS = 270.0
# After IOMAD's task held its lock past --moodle-lock-wait, how long before a claim is tried again.
CLAIM_PAUSE_SECONDS = 0.5


class RecipientResolver(Protocol):
    """Who else receives each row (IOMAD's task's rules): an `Envelope`, a `Reason` to leave the
    row to Moodle, or anything else for "not knowable yet, ask again in a later round"."""

    def resolve(self, jobs: Sequence[Job]) -> Mapping[int, object]: ...

    def close(self) -> None: ...


class UserAlone:
    """The user as the only recipient: for sites without IOMAD's tables (core Moodle outboxes)."""

    def resolve(self, jobs: Sequence[Job]) -> Mapping[int, object]:
        return {job.outbox.id: envelope(job) for job in jobs}

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ClaimRules:
    sink: str
    # Whether a resend within FIFO_DEDUP_SECONDS is dropped by AWS (an SQS FIFO queue).
    fifo: bool
    task_lock: str | None
    lock_wait: float

    @classmethod
    def of(cls, settings: Settings, sink: str) -> ClaimRules:
        fifo = settings.sink.kind == "sqs" and (settings.sink.queue_url or "").endswith(".fifo")
        return cls(sink, fifo, settings.moodle_task_lock, settings.moodle_lock_wait)


@dataclass(slots=True)
class Claims:
    to_send: list[Job] = field(default_factory=list)
    marks: dict[int, int] = field(default_factory=dict)
    settled: list[Resolution] = field(default_factory=list)


class Claimer:
    def __init__(
        self, rules: ClaimRules, store: ClaimStore, recipients: RecipientResolver, metrics: Metrics, clock: Clock
    ) -> None:
        self._rules = rules
        self._store = store
        self._recipients = recipients
        self._metrics = metrics
        self._clock = clock
        # While IOMAD's email task holds its lock, no claim is tried before this (monotonic) time.
        self._paused_until = 0.0
        # Set when the recipient look-up lost the replica: the session ends as if the reader had.
        self.replica_lost: ReplicaUnreachable | None = None

    @property
    def paused(self) -> bool:
        return self.replica_lost is not None or self._clock.monotonic() < self._paused_until

    def claim_round(self, fresh: list[Job], resumed: list[tuple[Job, Recorded]], staging: Staging) -> Claims:
        """Rows not claimed now (the task holds its lock, the replica was lost, the department is
        not there yet) go back to `staging`, still holding the checkpoint."""
        claims = Claims()
        # A claim a restart found is sent again only where the FIFO queue would drop a second copy;
        # the others go back to Moodle, so only the former need their recipients looked up.
        resendable: list[tuple[Job, int]] = [
            (job, entry.claim_mark)
            for job, entry in resumed
            if self._rules.fifo and entry.claim_mark is not None and entry.age_seconds < FIFO_DEDUP_SECONDS
        ]
        looked_up = [*fresh, *(job for job, _ in resendable)]
        try:
            answers = self._recipients.resolve(looked_up) if looked_up else {}
        except ReplicaUnreachable as error:
            # Like a cut binlog link: nothing is claimed, the rows stay ready (holding the
            # checkpoint), the loop drains what AWS has and the session is rebuilt.
            staging.add_ready([*fresh, *(job for job, _ in resumed)])
            self.replica_lost = error
            return claims
        addressed = self._addressed(fresh, answers, staging, claims)
        self._resume(resumed, resendable, answers, claims)
        if addressed:
            self._claim(addressed, staging, claims)
        return claims

    @staticmethod
    def _addressed(fresh: list[Job], answers: Mapping[int, object], staging: Staging, claims: Claims) -> list[Job]:
        addressed: list[Job] = []
        for job in fresh:
            answer = answers.get(job.outbox.id)
            if isinstance(answer, Envelope):
                staging.addressed(job)
                addressed.append(replace(job, envelope=answer))
            elif isinstance(answer, Reason):
                staging.addressed(job)
                claims.settled.append(left_to_moodle(job, Status.SKIPPED, answer))
            else:
                given_up = staging.defer(job)
                if given_up is not None:
                    claims.settled.append(given_up)
        return addressed

    @staticmethod
    def _resume(
        resumed: list[tuple[Job, Recorded]],
        resendable: list[tuple[Job, int]],
        answers: Mapping[int, object],
        claims: Claims,
    ) -> None:
        for job, mark in resendable:
            answer = answers.get(job.outbox.id)
            if isinstance(answer, Envelope):
                # The FIFO queue drops it if the first send got through: at most once either way.
                claims.to_send.append(replace(job, envelope=answer))
                claims.marks[job.outbox.id] = mark
        for job, entry in resumed:
            if job.outbox.id not in claims.marks:
                # AWS may or may not have it: Moodle sends it (the one duplicate kind left, counted).
                left = left_to_moodle(job, Status.UNCERTAIN, Reason.NO_ANSWER)
                claims.settled.append(replace(left, claim_mark=entry.claim_mark))

    def _claim(self, jobs: list[Job], staging: Staging, claims: Claims) -> None:
        rows = [
            Resolution(
                job.outbox.id,
                job.outbox.userid,
                Status.CLAIMED,
                Reason.NONE,
                job.start.position,
                job.event_time,
                sink=self._rules.sink,
            )
            for job in jobs
        ]
        claimed = self._store.claim(rows, self._rules.task_lock, self._rules.lock_wait)
        if claimed is None:
            # IOMAD's task is sending: its rows are its own; ours wait (holding the checkpoint)
            # until it is done, and the claim's `sent IS NULL` guard then sorts out which are left.
            self._metrics.task_lock_busy.inc()
            self._paused_until = self._clock.monotonic() + CLAIM_PAUSE_SECONDS
            logs.info("email_task_running", rows=len(jobs))
            staging.add_ready(jobs)
            return
        if self._rules.task_lock is not None:
            self._metrics.task_lock_held.observe(claimed.held_seconds)
        crash_point("after_claim")
        for job in jobs:
            if job.outbox.id in claimed.outbox_ids:
                claims.to_send.append(job)
                claims.marks[job.outbox.id] = claimed.mark
            else:
                claims.settled.append(left_to_moodle(job, Status.RACED, Reason.SENT_BY_MOODLE))

    def note_duplicates(self, remarked: set[int]) -> set[int]:
        """Outbox rows the binlog showed marked sent a second time: those we had offloaded are
        duplicates IOMAD's task sent (counted); returns those the ledger cannot answer for yet."""
        if not remarked:
            return remarked
        ours, pending = self._store.note_duplicates(sorted(remarked))
        if ours:
            self._metrics.jobs.labels(Status.DUPLICATE_OBSERVED.value, Reason.SENT_BY_MOODLE.value).inc(len(ours))
            for outbox_id in ours:
                logs.warning("duplicate_observed", outbox_id=outbox_id, by="iomad_email_task")
        return set(pending)
