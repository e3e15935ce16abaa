"""The recipient look-up the loop calls once per round: parse each row's frozen headers, read what
IOMAD's task would read from the replica (batched, one consistent snapshot), apply its rules."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from cdc_offload import logs
from cdc_offload.model import Envelope, Job, Reason
from cdc_offload.recipients import rules
from cdc_offload.recipients.headers import FrozenHeaders, parse_headers
from cdc_offload.recipients.outcome import Deferred, Refusal, Refused
from cdc_offload.recipients.site import NAMES, SiteConfig
from cdc_offload.recipients.tables import CompanyUser, LookupUnavailable, ReplicaTables
from cdc_offload.settings import Settings

Answer = Envelope | Reason | Deferred


class RecipientLookup:
    """Owns one PyMySQL connection to the replica (settings.source). `resolve` never raises for a
    row: what it cannot answer with certainty is a Reason, and the row is left to Moodle."""

    def __init__(
        self, settings: Settings, *, config_ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tables = ReplicaTables(settings)
        # Site settings change rarely (an admin page): read again after a few seconds, not per round.
        self._config_ttl = config_ttl
        self._clock = clock
        self._site: SiteConfig | None = None
        self._site_read_at = 0.0

    def close(self) -> None:
        self._tables.close()

    def resolve(self, jobs: Sequence[Job]) -> dict[int, Answer]:
        """By outbox id: who receives the row and from whom, why it is left to Moodle, or Deferred
        (ask again next round)."""
        answers: dict[int, Envelope | Refusal | Deferred] = {}
        parsed: dict[int, FrozenHeaders] = {}
        for job in jobs:
            try:
                parsed[job.outbox.id] = parse_headers(job.outbox.headers)
            except Refused as problem:
                answers[job.outbox.id] = problem.refusal
        readable = [job for job in jobs if job.outbox.id in parsed]
        if readable:
            try:
                replica = self._read(readable, parsed)
            except LookupUnavailable as error:
                logs.warning("recipient_lookup_failed", error=str(error), jobs=len(readable))
                unknown = Refusal(
                    Reason.RECIPIENTS_UNKNOWN,
                    "the replica could not be read for the recipient look-up; the row is left to Moodle. "
                    "Check the reader's connection and its SELECT grants (`cdc-offload check`)",
                )
                answers.update((job.outbox.id, unknown) for job in readable)
            else:
                for job in readable:
                    try:
                        answers[job.outbox.id] = rules.envelope(job, parsed[job.outbox.id], replica)
                    except Refused as refused:
                        answers[job.outbox.id] = refused.refusal
        return {job.outbox.id: self._reported(job, answers[job.outbox.id]) for job in jobs}

    @staticmethod
    def _reported(job: Job, answer: Envelope | Refusal | Deferred) -> Answer:
        if isinstance(answer, Refusal):
            logs.warning(
                "recipients_left_to_moodle",
                outbox_id=job.outbox.id,
                user_id=job.outbox.userid,
                reason=answer.reason.value,
                problem=answer.problem,
            )
            return answer.reason
        if isinstance(answer, Deferred):
            logs.debug("recipients_deferred", outbox_id=job.outbox.id, waiting_for=answer.waiting_for)
        return answer

    def _site_config(self) -> SiteConfig:
        now = self._clock()
        if self._site is None or now - self._site_read_at >= self._config_ttl:
            self._site = SiteConfig.from_values(self._tables.config(NAMES))
            self._site_read_at = now
        return self._site

    def _read(self, jobs: Sequence[Job], parsed: dict[int, FrozenHeaders]) -> rules.Replica:
        """Everything the rules need for these rows, one SELECT per table, in the order the answers
        depend on each other (templates and memberships name the users to read)."""
        tables = self._tables
        with tables.consistent_read():
            site = self._site_config()
            users = {job.outbox.userid for job in jobs}
            companyids = {job.outbox.companyid for job in jobs}
            templates = tuple(tables.templates(companyids, {job.outbox.templatename or "" for job in jobs}))
            named: set[int] = set()
            for frozen in parsed.values():
                if frozen.template is not None:
                    named |= rules.user_ids_named(frozen.template)
            for stored in templates:
                if stored.template is not None:
                    named |= rules.user_ids_named(stored.template)
            company_users = tables.company_users(users, companyids)
            memberships: dict[int, list[CompanyUser]] = defaultdict(list)
            for membership in company_users:
                if membership.userid in users:
                    memberships[membership.userid].append(membership)
            managers = tuple(row for row in company_users if row.managertype == 1)
            departments = tables.departments({rows[0].departmentid for rows in memberships.values()})
            senders = {job.outbox.senderid for job in jobs if job.outbox.senderid and job.outbox.senderid > 0}
            support = {site.supportuserid} if site.supportuserid is not None else set()
            wanted = users | named | {m.userid for m in managers} | set(site.siteadmins) | senders | support
            user_rows = tables.users(wanted)
            companies = tables.companies(companyids | {row.companyid for row in company_users if row.userid in users})
            fields = {c.emailprofileid for c in companies.values() if c.emailprofileid}
            if site.companyemailprofileid:
                fields.add(site.companyemailprofileid)
            profile = tables.profile_data(users, fields)
        return rules.Replica(
            site=site,
            users=user_rows,
            memberships={userid: tuple(rows) for userid, rows in memberships.items()},
            managers=managers,
            departments=departments,
            companies=companies,
            profile_data=profile,
            templates=templates,
        )
