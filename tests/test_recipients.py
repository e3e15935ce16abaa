"""Who receives an outbox row and from whom, against real IOMAD-shaped tables on MariaDB and
`headers` values written exactly as IOMAD's queue_for_cron() writes them; plus the parser and the
address rules on their own (no server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import phpserialize
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_offload.demo.moodle import NewUser, create_user_iomad, iomad_headers
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.model import (
    Checkpoint,
    Envelope,
    Job,
    OutboxRow,
    Position,
    Reason,
    Recipient,
    RecipientKind,
    Sender,
    UserRow,
)
from cdc_offload.preflight import reader_privilege_checks, recipient_privilege_checks
from cdc_offload.recipients import Deferred, RecipientLookup
from cdc_offload.recipients.addresses import UnreadableUserId, Verdict, user_ids, verdict
from cdc_offload.recipients.headers import MAX_BYTES, HeadersProblem, parse_headers
from cdc_offload.settings import Dsn, Settings, SinkSettings
from tests.conftest import CANARY

USER, EMAILTO, EMAILCC = RecipientKind.USER, RecipientKind.EMAILTO, RecipientKind.EMAILCC
TOOTHER, CCOTHER = RecipientKind.EMAILTOOTHER, RecipientKind.EMAILCCOTHER
MANAGER, SUPERVISOR = RecipientKind.MANAGER, RecipientKind.SUPERVISOR


# -- an IOMAD site: company 1 ("Demo Academy", top department 1) with a sub-department ---------------


@dataclass
class Site:
    moodle: MoodleDatabase
    admin_id: int
    sub_department: int

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> int:
        connection = self.moodle.admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params or None)
                return int(cursor.lastrowid or 0)
        finally:
            connection.close()

    def account(self, email: str, firstname: str = "Mo", *, suspended: int = 0, deleted: int = 0) -> int:
        return self.sql(
            "INSERT INTO mdl_user (auth, confirmed, mnethostid, username, password, firstname, lastname, email, "
            "suspended, deleted, timecreated, timemodified) VALUES ('manual', 1, 1, %s, '', %s, 'X', %s, %s, %s, 0, 0)",
            (f"u{time.monotonic_ns()}", firstname, email, suspended, deleted),
        )

    def manager(self, email: str, department: int, managertype: int = 1, **account: Any) -> int:
        userid = self.account(email, **account)
        self.sql(
            "INSERT INTO mdl_company_users (companyid, userid, managertype, departmentid) VALUES (1, %s, %s, %s)",
            (userid, managertype, department),
        )
        return userid

    def config(self, name: str, value: str) -> None:
        self.sql("REPLACE INTO mdl_config (name, value) VALUES (%s, %s)", (name, value))

    def new_user(self, headers: str | None, **fields: Any) -> Job:
        """A user created the way IOMAD's company_user::create() writes one, as the loop's Job."""
        user = NewUser(
            username=f"learner{time.monotonic_ns()}",
            email=fields.pop("email", "learner@example.org"),
            password=CANARY,
            headers=headers,
            **fields,
        )
        connection = self.moodle.admin()
        try:
            _, outbox_id = create_user_iomad(connection, user)
        finally:
            connection.close()
        return self.job(outbox_id)

    def job(self, outbox_id: int) -> Job:
        connection = self.moodle.admin()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT e.id, e.userid, e.templatename, e.sent, e.due, e.companyid, e.subject, e.body, e.headers, "
                "e.senderid, u.username, u.firstname, u.lastname, u.email FROM mdl_email e "
                "JOIN mdl_user u ON u.id = e.userid WHERE e.id = %s",
                (outbox_id,),
            )
            row = cursor.fetchone()
        connection.close()
        outbox = OutboxRow(*row[:8], headers=row[8] or "", senderid=row[9])
        user = UserRow(row[1], row[10], row[11], row[12], row[13], "manual", False, False)
        return Job(outbox, user, Checkpoint(Position("binlog.000001", 4)), int(time.time()))


@pytest.fixture
def site(moodle: MoodleDatabase) -> Site:
    made = Site(moodle, 0, 0)
    made.admin_id = made.account("admin@academy.example", "Admin")
    made.config("siteadmins", str(made.admin_id))
    made.sub_department = made.sql(
        "INSERT INTO mdl_department (name, shortname, company, parent) VALUES ('Sales', 'sales', 1, 1)"
    )
    return made


@pytest.fixture
def lookup(site: Site) -> Iterator[RecipientLookup]:
    made = RecipientLookup(site.moodle.settings(SinkSettings(queue_url="unused")), config_ttl=0.0)
    yield made
    made.close()


def copies(answer: object) -> list[tuple[RecipientKind, str]]:
    assert isinstance(answer, Envelope), f"expected an envelope, got {answer!r}"
    assert [r.index for r in answer.recipients] == list(range(len(answer.recipients)))
    return [(r.kind, r.address) for r in answer.recipients]


def resolve(lookup: RecipientLookup, job: Job) -> Envelope | Reason | Deferred:
    return lookup.resolve([job])[job.outbox.id]


# -- who receives a row ------------------------------------------------------------------------------


def test_the_default_template_goes_to_the_user_and_the_company_managers_only(
    site: Site, lookup: RecipientLookup
) -> None:
    site.manager("ceo@acme.example", department=1)  # company manager at the top department
    site.manager("sales-lead@acme.example", department=site.sub_department, managertype=2)  # department manager
    job = site.new_user(iomad_headers(), departmentid=site.sub_department)
    answer = resolve(lookup, job)
    assert copies(answer) == [(USER, "learner@example.org"), (MANAGER, "ceo@acme.example")]
    assert isinstance(answer, Envelope)
    assert answer.recipients[0].user_id == job.outbox.userid
    # No template sender: the site's no-reply address, named after the support user (senderid -20).
    assert answer.sender == Sender(address=None, name="Demo Academy", reply_to=())


@pytest.mark.slow
def test_the_task_account_and_inactive_managers_get_no_copy_and_a_manager_in_two_departments_gets_one(
    site: Site, lookup: RecipientLookup
) -> None:
    site.sql(
        "INSERT INTO mdl_company_users (companyid, userid, managertype, departmentid) VALUES (1, %s, 1, 1)",
        (site.admin_id,),
    )
    twice = site.manager("hr@acme.example", department=1)
    site.sql(
        "INSERT INTO mdl_company_users (companyid, userid, managertype, departmentid) VALUES (1, %s, 1, %s)",
        (twice, site.sub_department),
    )
    site.manager("gone@acme.example", department=1, suspended=1)
    site.manager("other-branch@acme.example", department=site.sql(
        "INSERT INTO mdl_department (name, shortname, company, parent) VALUES ('Ops', 'ops', 1, 1)"
    ))  # fmt: skip
    job = site.new_user(iomad_headers(), departmentid=site.sub_department)
    assert copies(resolve(lookup, job)) == [(USER, "learner@example.org"), (MANAGER, "hr@acme.example")]


@pytest.mark.slow
def test_disabledmanager_sends_to_the_user_alone(site: Site, lookup: RecipientLookup) -> None:
    site.manager("ceo@acme.example", department=1)
    job = site.new_user(iomad_headers(disabledmanager=1))
    assert copies(resolve(lookup, job)) == [(USER, "learner@example.org")]


@pytest.mark.slow
def test_emailto_and_emailcc_users_in_order_without_the_suspended_one(site: Site, lookup: RecipientLookup) -> None:
    to_a = site.account("to-a@acme.example")
    to_suspended = site.account("to-suspended@acme.example", suspended=1)
    to_deleted = site.account("to-deleted@acme.example", deleted=1)
    cc_b = site.account("cc-b@acme.example")
    headers = iomad_headers(
        emailto=f"{to_a},{to_suspended}, {to_deleted},{to_a}",
        emailcc=str(cc_b),
        header_lines=["To:to-a@acme.example", "Cc:cc-b@acme.example"],
    )
    job = site.new_user(headers)
    assert copies(resolve(lookup, job)) == [
        (USER, "learner@example.org"),
        (EMAILTO, "to-a@acme.example"),
        (EMAILTO, "to-a@acme.example"),  # listed twice: IOMAD sends it twice
        (EMAILCC, "cc-b@acme.example"),
    ]


@pytest.mark.slow
def test_emailtoother_skips_what_moodle_calls_invalid_and_keeps_the_rest(site: Site, lookup: RecipientLookup) -> None:
    headers = iomad_headers(
        emailtoother="hr-inbox@acme-partner.example,not-an-address, spaced@acme-partner.example,x@localhost",
        emailccother="audit@acme-partner.example",
        header_lines=["To:hr-inbox@acme-partner.example", "Cc:audit@acme-partner.example"],
    )
    job = site.new_user(headers)
    assert copies(resolve(lookup, job)) == [
        (USER, "learner@example.org"),
        (TOOTHER, "hr-inbox@acme-partner.example"),
        (CCOTHER, "audit@acme-partner.example"),
    ]


@pytest.mark.slow
def test_an_address_moodle_accepts_but_the_sidecar_would_not_send_exactly_leaves_the_row(
    site: Site, lookup: RecipientLookup
) -> None:
    job = site.new_user(iomad_headers(emailtoother="o'brien@acme-partner.example"))
    assert resolve(lookup, job) is Reason.BAD_ADDRESS


@pytest.mark.parametrize("whose", ["company", "site"])
@pytest.mark.slow
def test_supervisor_addresses_come_from_the_company_field_else_the_sites(
    site: Site, lookup: RecipientLookup, whose: str
) -> None:
    field = 7
    if whose == "company":
        site.sql("UPDATE mdl_company SET emailprofileid = %s WHERE id = 1", (field,))
        site.config("companyemailprofileid", "99")  # the company's field wins
    else:
        site.config("companyemailprofileid", str(field))
    job = site.new_user(iomad_headers())
    site.sql(
        "INSERT INTO mdl_user_info_data (userid, fieldid, data) VALUES (%s, %s, %s)",
        (job.outbox.userid, field, "boss@acme.example,not valid,coach@acme.example,boss@acme.example"),
    )
    site.sql(
        "INSERT INTO mdl_user_info_data (userid, fieldid, data) VALUES (%s, 99, 'wrong-field@acme.example')",
        (job.outbox.userid,),
    )
    assert copies(resolve(lookup, job)) == [
        (USER, "learner@example.org"),
        (SUPERVISOR, "boss@acme.example"),  # once: IOMAD keys the list by address
        (SUPERVISOR, "coach@acme.example"),
    ]


@pytest.mark.slow
def test_disabledsupervisor_sends_no_supervisor_copy(site: Site, lookup: RecipientLookup) -> None:
    site.config("companyemailprofileid", "7")
    job = site.new_user(iomad_headers(disabledsupervisor=1))
    site.sql(
        "INSERT INTO mdl_user_info_data (userid, fieldid, data) VALUES (%s, 7, 'b@x.example')", (job.outbox.userid,)
    )
    assert copies(resolve(lookup, job)) == [(USER, "learner@example.org")]


# -- from whom ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_emailfromother_with_the_company_name_and_a_stored_reply_to(site: Site, lookup: RecipientLookup) -> None:
    site.sql("UPDATE mdl_company SET name = 'Acme Corp' WHERE id = 1")
    headers = iomad_headers(
        emailfromother="training@acme.example",
        emailfromothername="{Company_Name}",
        emailreplytoother="help@acme.example",
        header_lines=["reply-to:help@acme.example"],
    )
    answer = resolve(lookup, site.new_user(headers))
    assert isinstance(answer, Envelope)
    assert answer.sender == Sender(address="training@acme.example", name="Acme Corp", reply_to=("help@acme.example",))


@pytest.mark.slow
def test_emailfrom_user_wins_over_emailfromother_and_a_plain_name(site: Site, lookup: RecipientLookup) -> None:
    sender = site.account("coordinator@acme.example", "Grace")
    headers = iomad_headers(emailfrom=str(sender), emailfromother="training@acme.example", emailfromothername="Team")
    answer = resolve(lookup, site.new_user(headers))
    assert isinstance(answer, Envelope)
    assert answer.sender == Sender(address="coordinator@acme.example", name="Grace")
    named = resolve(lookup, site.new_user(iomad_headers(emailfromothername="Acme Training Team")))
    assert isinstance(named, Envelope) and named.sender == Sender(address=None, name="Acme Training Team")


@pytest.mark.slow
def test_the_support_user_account_names_the_sender_when_the_site_sets_one(site: Site, lookup: RecipientLookup) -> None:
    site.config("supportuserid", str(site.account("support@academy.example", "Sam")))
    answer = resolve(lookup, site.new_user(iomad_headers()))
    assert isinstance(answer, Envelope) and answer.sender == Sender(address=None, name="Sam")


# -- rows left to Moodle ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_template_disabled_for_the_company_is_left_to_moodle(site: Site, lookup: RecipientLookup) -> None:
    site.sql("INSERT INTO mdl_email_template (companyid, name, lang, disabled) VALUES (1, 'user_create', 'en', 1)")
    assert resolve(lookup, site.new_user(iomad_headers())) is Reason.TEMPLATE_DISABLED
    # One fully enabled row for the name (another language) is enough for IOMAD.
    site.sql("INSERT INTO mdl_email_template (companyid, name, lang) VALUES (1, 'user_create', 'de')")
    assert isinstance(resolve(lookup, site.new_user(iomad_headers())), Envelope)


@pytest.mark.slow
def test_an_attachment_is_left_to_moodle(site: Site, lookup: RecipientLookup) -> None:
    attachment = phpserialize.phpobject("stdClass", {"filepath": "/data/filedir/ab/cd/abcd", "filename": "logo.png"})
    job = site.new_user(iomad_headers(extra={"attachment": attachment}))
    assert resolve(lookup, job) is Reason.ATTACHMENT


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [("divertallemailsto", "qa@academy.example", Reason.DIVERTED), ("noemailever", "1", Reason.NO_EMAIL_EVER)],
)
@pytest.mark.slow
def test_site_settings_that_change_every_email_leave_the_row(
    site: Site, lookup: RecipientLookup, name: str, value: str, reason: Reason
) -> None:
    job = site.new_user(iomad_headers())
    site.config(name, "0")  # PHP's empty(): "0" is not set
    assert isinstance(resolve(lookup, job), Envelope)
    site.config(name, value)
    assert resolve(lookup, job) is reason


def test_the_users_current_row_decides(site: Site, lookup: RecipientLookup) -> None:
    suspended, deleted, bad = (site.new_user(iomad_headers()) for _ in range(3))
    site.sql("UPDATE mdl_user SET suspended = 1 WHERE id = %s", (suspended.outbox.userid,))
    site.sql("UPDATE mdl_user SET deleted = 1 WHERE id = %s", (deleted.outbox.userid,))
    site.sql("UPDATE mdl_user SET email = 'not an address' WHERE id = %s", (bad.outbox.userid,))
    answers = lookup.resolve([suspended, deleted, bad])
    assert answers == {
        suspended.outbox.id: Reason.USER_SUSPENDED,
        deleted.outbox.id: Reason.USER_DELETED,
        bad.outbox.id: Reason.BAD_ADDRESS,
    }


@pytest.mark.parametrize(
    "headers",
    [
        iomad_headers()[:-40],  # truncated
        iomad_headers().replace('O:8:"stdClass"', 'O:8:"Evil_Cls"'),  # an object of another class
        'a:1:{s:8:"template";s:11:"user_create";}',  # a template that is not an object
        'a:1:{i:0;s:27:"Bcc:hidden@attacker.example";}',  # a raw header IOMAD never stores
        "a:1:{i:0;" * 50 + "N;" + "}" * 50,  # nested deeper than any IOMAD value
        "a:1:{i:0;R:1;}",  # a reference
        iomad_headers(header_lines=["reply-to:a@x.example, b@x.example"]),  # two addresses in one header
    ],
    ids=["truncated", "other-class", "string-template", "bcc", "deep", "reference", "two-reply-to"],
)
@pytest.mark.slow
def test_bad_or_hostile_headers_are_left_to_moodle(site: Site, lookup: RecipientLookup, headers: str) -> None:
    assert resolve(lookup, site.new_user(headers)) is Reason.BAD_HEADERS


@pytest.mark.slow
def test_without_a_frozen_template_the_companys_current_one_applies(site: Site, lookup: RecipientLookup) -> None:
    site.manager("ceo@acme.example", department=1)
    # Nothing in the tables: IOMAD's built-in default (user and company managers).
    assert copies(resolve(lookup, site.new_user(None))) == [
        (USER, "learner@example.org"),
        (MANAGER, "ceo@acme.example"),
    ]
    site.sql(
        "INSERT INTO mdl_email_template (companyid, name, lang, emailtoother, disabledmanager) "
        "VALUES (1, 'user_create', 'en', 'hr-inbox@acme-partner.example', 1)"
    )
    assert copies(resolve(lookup, site.new_user(None))) == [
        (USER, "learner@example.org"),
        (TOOTHER, "hr-inbox@acme-partner.example"),
    ]


@pytest.mark.slow
def test_a_row_without_a_frozen_template_whose_company_template_sets_a_sender_is_left_to_moodle(
    site: Site, lookup: RecipientLookup
) -> None:
    site.sql(
        "INSERT INTO mdl_email_template (companyid, name, lang, emailfromother) "
        "VALUES (1, 'user_create', 'en', 'training@acme.example')"
    )
    assert resolve(lookup, site.new_user(None)) is Reason.RECIPIENTS_UNKNOWN


def test_managers_wait_for_the_users_department_row(site: Site, lookup: RecipientLookup) -> None:
    site.manager("ceo@acme.example", department=1)
    job = site.new_user(iomad_headers())
    site.sql("DELETE FROM mdl_company_users WHERE userid = %s", (job.outbox.userid,))
    assert resolve(lookup, job) == Deferred()
    # IOMAD's last transaction of the user's creation arrives on the replica.
    site.sql(
        "INSERT INTO mdl_company_users (companyid, userid, departmentid) VALUES (1, %s, %s)",
        (job.outbox.userid, site.sub_department),
    )
    assert copies(resolve(lookup, job)) == [(USER, "learner@example.org"), (MANAGER, "ceo@acme.example")]


def test_no_wait_when_no_manager_could_be_in_the_answer(site: Site, lookup: RecipientLookup) -> None:
    site.manager("sales-lead@acme.example", department=site.sub_department, managertype=2)
    job = site.new_user(iomad_headers())
    site.sql("DELETE FROM mdl_company_users WHERE userid = %s", (job.outbox.userid,))
    assert copies(resolve(lookup, job)) == [(USER, "learner@example.org")]


def test_an_unreadable_table_leaves_the_round_to_moodle_and_logs_no_content(
    site: Site, lookup: RecipientLookup, caplog: pytest.LogCaptureFixture
) -> None:
    site.manager("ceo@acme.example", department=1)
    jobs = [site.new_user(iomad_headers(header_lines=["reply-to:help@acme.example"])) for _ in range(3)]
    site.sql(f"REVOKE SELECT ON `{site.moodle.database}`.`mdl_department` FROM '{site.moodle.reader.user}'@'%'")
    caplog.set_level("DEBUG", logger="cdc_offload")
    assert set(lookup.resolve(jobs).values()) == {Reason.RECIPIENTS_UNKNOWN}
    logged = caplog.text + " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert "recipients_left_to_moodle" in caplog.text and "cdc-offload check" in logged
    for secret in (CANARY, "learner@example.org", "ceo@acme.example", "help@acme.example"):
        assert secret not in logged


@pytest.mark.slow
def test_one_round_answers_many_rows_of_different_shapes(site: Site, lookup: RecipientLookup) -> None:
    site.manager("ceo@acme.example", department=1)
    plain = [site.new_user(iomad_headers(), email=f"l{n}@example.org") for n in range(40)]
    other = site.new_user(iomad_headers(emailtoother="hr@acme-partner.example", disabledmanager=1))
    broken = site.new_user("a:1:{")
    answers = lookup.resolve([*plain, other, broken])
    for n, job in enumerate(plain):
        assert copies(answers[job.outbox.id]) == [(USER, f"l{n}@example.org"), (MANAGER, "ceo@acme.example")]
    assert copies(answers[other.outbox.id]) == [(USER, "learner@example.org"), (TOOTHER, "hr@acme-partner.example")]
    assert answers[broken.outbox.id] is Reason.BAD_HEADERS
    assert repr(answers[other.outbox.id]).count("@") == 0, "envelopes print no address"


# -- the preflight --------------------------------------------------------------------------------------


def test_check_names_each_missing_recipient_grant() -> None:
    settings = Settings(source=Dsn("h", 3306, "r", "moodle"), writer=Dsn("h", 3306, "w", "moodle"),
                        sink=SinkSettings(queue_url="q"))  # fmt: skip
    full = [
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `r`@`%`",
        "GRANT SELECT ON `moodle`.`mdl_user` TO `r`@`%`",
        "GRANT SELECT ON `moodle`.`mdl_email` TO `r`@`%`",
        *(f"GRANT SELECT ON `moodle`.`{t}` TO `r`@`%`" for t in settings.tables.recipient_tables()),
    ]
    assert [r.ok for r in recipient_privilege_checks(full, settings)] == [True]
    assert not [r for r in reader_privilege_checks(full, settings) if r.warning], "init's grants are not 'broader'"
    (missing,) = recipient_privilege_checks([line for line in full if "mdl_company_users" not in line], settings)
    assert not missing.ok and "SELECT ON `moodle`.`mdl_company_users`" in missing.problem


# -- the parser and the address rules, no server ------------------------------------------------------


def test_headers_as_iomad_writes_them_are_read() -> None:
    frozen = parse_headers(
        iomad_headers(
            emailtoother="hr-inbox@acme-partner.example",
            disabledsupervisor=1,
            header_lines=["To:hr-inbox@acme-partner.example", "reply-to:help@acme.example"],
        )
    )
    assert frozen.template is not None and frozen.template.emailtoother == "hr-inbox@acme-partner.example"
    assert frozen.template.managers and not frozen.template.supervisors
    assert frozen.reply_to == ("help@acme.example",)
    assert parse_headers("").template is None, "NULL headers: the task reads the template from the tables"


def test_oversized_headers_are_refused_before_parsing() -> None:
    with pytest.raises(HeadersProblem) as refused:
        parse_headers(iomad_headers(body="x" * MAX_BYTES))
    assert refused.value.refusal.reason is Reason.BAD_HEADERS and "larger than" in refused.value.refusal.problem


_SERIALIZED_PIECES = st.sampled_from(
    ["a:", 'O:8:"stdClass":', 's:5:"', "i:", "d:", "b:", "N;", "R:1;", 'C:3:"Foo":', "{", "}", ":", ";", '"', "1", "99"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(_SERIALIZED_PIECES, max_size=60).map("".join),
        st.builds(lambda s, cut: s[:cut], st.just(iomad_headers(emailto="5")), st.integers(0, 900)),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False),
            lambda inner: st.dictionaries(st.integers() | st.text(max_size=10), inner, max_size=4),
            max_leaves=20,
        ).map(lambda value: bytes(phpserialize.dumps(value)).decode("utf-8", "replace")),
    )
)
@pytest.mark.slow
def test_the_parser_raises_nothing_but_its_own_problem(text: str) -> None:
    try:
        parse_headers(text)
    except HeadersProblem as problem:
        assert problem.refusal.reason in (Reason.BAD_HEADERS, Reason.ATTACHMENT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hr@acme.example", Verdict.SEND),
        ("first.last+tag@sub.acme-partner.example", Verdict.SEND),
        (" hr@acme.example", Verdict.SKIP),  # split on commas, not trimmed: Moodle refuses it
        ("hr@localhost", Verdict.SKIP),
        ("hr@acme.123", Verdict.SKIP),
        ("<hr@acme.example>", Verdict.SKIP),
        ("hr@@acme.example", Verdict.SKIP),
        ("hr.@acme.example", Verdict.SKIP),
        ("hé@acme.example", Verdict.SKIP),
        ("", Verdict.SKIP),
        ('"a b"@acme.example', Verdict.UNSURE),  # PHP accepts quoted local parts; we do not send them
        ("hr@[192.0.2.1]", Verdict.UNSURE),
        ("o'brien@acme.example", Verdict.UNSURE),
    ],
)
def test_which_addresses_iomad_sends_to(text: str, expected: Verdict) -> None:
    assert verdict(text) is expected


def test_user_id_lists_read_like_mysql_would_or_not_at_all() -> None:
    assert user_ids("5, 7,,5 ") == [5, 7, 5]
    assert user_ids("") == []
    with pytest.raises(UnreadableUserId):
        user_ids("5,1e1")


def test_recipients_print_no_address() -> None:
    recipient = Recipient(index=0, kind=USER, address="learner@example.org")
    assert "@" not in repr(recipient) and "@" not in repr(Sender(address="a@b.example", reply_to=("c@d.example",)))
