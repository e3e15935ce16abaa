"""The offload pipeline end to end: real MariaDB binlog, real HTTP to moto, the real runtime."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from cdc_offload.demo.moodle import (
    SUBJECT,
    NewUser,
    create_user_iomad,
    create_users_bulk,
    iomad_headers,
    make_users,
    unrelated_noise,
)
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import SinkSettings, TableNames
from tests.conftest import CANARY
from tests.support import Sidecar, ledger, outbox_rows, ses_messages, sqs_messages, wait_for

FAST = {"heartbeat": 0.5, "read_timeout": 5.0, "checkpoint_interval": 0.2}


def sidecar(moodle: MoodleDatabase, sink: SinkSettings, **overrides: Any) -> Sidecar:
    return Sidecar(moodle.settings(sink, **{**FAST, **overrides})).start()


def assert_delivered_once(messages: list[dict[str, Any]], expected: dict[int, NewUser]) -> None:
    by_outbox: dict[int, list[dict[str, Any]]] = {}
    for message in messages:
        by_outbox.setdefault(message["outbox_id"], []).append(message)
    assert sorted(by_outbox) == sorted(expected), "every expected email arrives, and nothing else"
    for outbox_id, user in expected.items():
        assert len(by_outbox[outbox_id]) == 1, f"outbox row {outbox_id} arrived {len(by_outbox[outbox_id])} times"
        (message,) = by_outbox[outbox_id]
        assert message["recipients"][0]["address"] == user.email
        assert message["subject"] == SUBJECT
        assert f"password: {user.password}</br>" in message["html_body"]
        assert f"username: {user.username}</br>" in message["html_body"]
        assert message["schema_version"] == 2


@pytest.mark.slow
def test_iomad_style_users_arrive_once_in_sqs_and_leave_the_outbox(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    running = sidecar(moodle, sqs_sink)
    admin = moodle.admin()
    expected: dict[int, NewUser] = {}
    for n, template in enumerate(make_users(200)):
        user = replace(template, password=f"Pw{n:04d}&x$")
        expected[create_user_iomad(admin, user)[1]] = user
        unrelated_noise(admin, 3)
    wait_for(lambda: running.resolved() >= 200, 60, "200 resolved rows")
    running.stop()

    assert_delivered_once(sqs_messages(sqs_sink.queue_url or ""), expected)
    assert not set(outbox_rows(moodle)) & set(expected), "every offloaded row left the outbox"
    recorded = ledger(moodle, running.settings.state_schema)
    assert {recorded[i]["status"] for i in expected} == {"offloaded"}
    assert all(recorded[i]["message_id"] for i in expected)


@pytest.mark.slow
def test_bulk_import_in_one_transaction(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    running = sidecar(moodle, sqs_sink)
    users = make_users(500, start=10_000)
    ids = create_users_bulk(moodle.admin(), users)
    wait_for(lambda: running.resolved() >= 500, 60, "500 resolved rows")
    running.stop()

    assert_delivered_once(sqs_messages(sqs_sink.queue_url or ""), {o: u for (_, o), u in zip(ids, users, strict=True)})
    assert not set(outbox_rows(moodle)) & {o for _, o in ids}


@pytest.mark.slow
def test_ses_delivers_html_with_a_text_alternative(moodle: MoodleDatabase, ses_sender: str) -> None:
    before = len(ses_messages())
    running = sidecar(moodle, SinkSettings(kind="ses", ses_from=ses_sender, deadline=5.0))
    admin = moodle.admin()
    users = make_users(200, start=20_000)
    expected = {create_user_iomad(admin, user)[1]: user for user in users}
    bulk_users = make_users(500, start=30_000)
    expected.update({o: u for (_, o), u in zip(create_users_bulk(admin, bulk_users), bulk_users, strict=True)})
    wait_for(lambda: running.resolved() >= 700, 90, "700 resolved rows")
    running.stop()

    sent = ses_messages()[before:]
    assert len(sent) == 700
    by_address = {m.destinations["ToAddresses"][0]: m for m in sent}
    assert len(by_address) == 700, "one message per user"
    for user in expected.values():
        message = by_address[user.email]  # IOMAD mails the bare address
        assert message.subject == SUBJECT
        assert f"password: {user.password}" in message.body
    assert not set(outbox_rows(moodle)) & set(expected)
    assert {r["status"] for r in ledger(moodle, running.settings.state_schema).values()} == {"offloaded"}


@pytest.mark.slow
def test_rows_that_are_not_ours_stay_for_moodle_and_the_ledger_says_why(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    admin = moodle.admin()
    # A user created before the sidecar ever started: its later outbox row has no user INSERT to pair.
    old_user_id, _ = create_user_iomad(admin, NewUser("veteran", "veteran@example.org", "Old#pw1", template="none"))
    running = sidecar(moodle, sqs_sink, pair_window=1.0)
    base = NewUser("", "", "Pw#1")
    cases = {
        "other_template": replace(base, username="reset", email="reset@example.org", template="user_reset"),
        "already_sent": replace(base, username="sent", email="sent@example.org", sent=int(time.time())),
        "bad_address": replace(base, username="noaddr", email=""),
        "user_suspended": replace(base, username="susp", email="susp@example.org", suspended=1),
        "scheduled": replace(base, username="later", email="later@example.org", due_offset=3600),
    }
    outbox = {reason: create_user_iomad(admin, user)[1] for reason, user in cases.items()}
    with admin.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {moodle.prefix}email (templatename, modifiedtime, subject, body, userid, due) "
            "VALUES ('user_create', UNIX_TIMESTAMP(), 's', 'b', %s, UNIX_TIMESTAMP())",
            (old_user_id,),
        )
        outbox["no_user_insert"] = int(cursor.lastrowid)
    wait_for(lambda: running.resolved() >= len(outbox), 30, "every case resolved")
    running.stop()

    recorded = ledger(moodle, running.settings.state_schema)
    for reason, outbox_id in outbox.items():
        assert recorded[outbox_id]["status"] == "skipped", reason
        assert recorded[outbox_id]["reason"] == reason
    remaining = outbox_rows(moodle)
    assert set(outbox.values()) <= set(remaining), "every one of them is still in the outbox"
    assert sqs_messages(sqs_sink.queue_url or "") == []


def test_a_users_other_queued_mail_survives(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    running = sidecar(moodle, sqs_sink)
    admin = moodle.admin()
    user_id, credential_row = create_user_iomad(admin, NewUser("twomails", "two@example.org", "Pw#2"))
    with admin.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {moodle.prefix}email (templatename, modifiedtime, subject, body, userid, due) "
            "VALUES ('course_welcome', UNIX_TIMESTAMP(), 'Welcome', 'hello', %s, UNIX_TIMESTAMP())",
            (user_id,),
        )
        other_row = int(cursor.lastrowid)
    wait_for(lambda: running.resolved() >= 2, 30, "both rows resolved")
    running.stop()

    remaining = outbox_rows(moodle)
    assert credential_row not in remaining
    assert remaining[other_row] is None, "the other mail is still queued, unsent, for Moodle"


@pytest.mark.slow
def test_mark_sent_mode_keeps_the_row_and_sets_sent(moodle: MoodleDatabase, sqs_sink: SinkSettings) -> None:
    running = sidecar(moodle, sqs_sink, suppress="mark-sent")
    _, outbox_id = create_user_iomad(moodle.admin(), NewUser("marked", "marked@example.org", "Pw#3"))
    wait_for(lambda: running.resolved() >= 1, 30, "the row resolved")
    running.stop()
    sent = outbox_rows(moodle)[outbox_id]
    assert sent is not None and abs(sent - time.time()) < 120
    assert len(sqs_messages(sqs_sink.queue_url or "")) == 1


@pytest.mark.slow
def test_stop_half_way_and_restart_misses_nothing_and_sends_nothing_twice(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    admin = moodle.admin()
    expected: dict[int, NewUser] = {}
    running = sidecar(moodle, sqs_sink)
    for user in make_users(60, start=40_000):
        expected[create_user_iomad(admin, user)[1]] = user
    running.stop()  # drains in-flight work; some of the 60 may not have been read yet
    for user in make_users(60, start=41_000):  # created while the sidecar is down
        expected[create_user_iomad(admin, user)[1]] = user
    running = sidecar(moodle, sqs_sink)
    for user in make_users(30, start=42_000):
        expected[create_user_iomad(admin, user)[1]] = user
    wait_for(lambda: len(ledger(moodle, running.settings.state_schema)) >= 150, 60, "150 ledger rows")
    running.stop()

    assert_delivered_once(sqs_messages(sqs_sink.queue_url or ""), expected)
    assert not set(outbox_rows(moodle)) & set(expected)


@pytest.mark.slow
def test_another_prefix_renamed_and_extra_columns_work_unchanged(db_server: Any, sqs_sink: SinkSettings) -> None:
    from cdc_offload.demo.stack import moodle_database

    moodle = moodle_database(db_server, database="site_custom", prefix="m2_")
    admin = moodle.admin()
    with admin.cursor() as cursor:
        cursor.execute("ALTER TABLE m2_email ADD COLUMN priority INT NOT NULL DEFAULT 5 AFTER id")
        cursor.execute("ALTER TABLE m2_email MODIFY COLUMN body LONGTEXT NOT NULL AFTER templatename")
        cursor.execute("ALTER TABLE m2_user ADD COLUMN custom_field VARCHAR(10) NULL FIRST")
    running = sidecar(moodle, sqs_sink, tables=TableNames(prefix="m2_"))
    expected = {create_user_iomad(admin, u, prefix="m2_")[1]: u for u in make_users(20, start=50_000)}
    wait_for(lambda: running.resolved() >= 20, 30, "20 rows resolved")
    running.stop()
    assert_delivered_once(sqs_messages(sqs_sink.queue_url or ""), expected)


@pytest.mark.slow
def test_canary_password_never_reaches_logs_or_ledger(
    moodle: MoodleDatabase, sqs_sink: SinkSettings, capfd: pytest.CaptureFixture[str]
) -> None:
    from cdc_offload import logs

    logs.configure("DEBUG")
    try:
        running = sidecar(moodle, sqs_sink)
        admin = moodle.admin()
        outbox_id = create_user_iomad(admin, NewUser("canary", "canary@example.org", CANARY))[1]
        create_user_iomad(admin, NewUser("canary2", "", CANARY))  # skipped: the decision path logs too
        wait_for(lambda: running.resolved() >= 2, 30, "both rows resolved")
        running.stop()
    finally:
        logs.configure("WARNING")
    out, err = capfd.readouterr()
    assert "outbox_row_resolved" in out, "the logs were captured"
    assert CANARY not in out and CANARY not in err
    assert "canary@example.org" not in out, "no address in the logs either"
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM `{running.settings.state_schema}`.ledger")
        assert CANARY not in repr(cursor.fetchall())
        cursor.execute(f"SELECT * FROM `{running.settings.state_schema}`.checkpoint")
        assert CANARY not in repr(cursor.fetchall())
    assert any(CANARY in m["html_body"] for m in sqs_messages(sqs_sink.queue_url or "") if m["outbox_id"] == outbox_id)


@pytest.mark.slow
def test_ses_sends_every_recipient_iomad_would_its_own_tagged_email(moodle: MoodleDatabase, ses_sender: str) -> None:
    """Direct SES: the user, the template's other address and the company manager each get a
    separate email (as IOMAD's task sends them), tagged with the copy it is; the ledger has each
    copy with SES's message id; the department manager gets none."""
    from email.utils import parseaddr

    admin = moodle.admin()
    with admin.cursor() as c:
        c.execute(
            f"INSERT INTO {moodle.prefix}department (id, name, shortname, company, parent) VALUES (2, 'S', 's', 1, 1)"
        )
        for email, managertype, department in (("boss@academy.example", 1, 1), ("lead@academy.example", 2, 2)):
            c.execute(
                f"INSERT INTO {moodle.prefix}user (auth, confirmed, mnethostid, username, firstname, lastname, email, "
                "timecreated, timemodified) VALUES ('manual', 1, 1, %s, 'M', 'Anager', %s, 0, 0)",
                (email.split("@")[0], email),
            )
            c.execute(
                f"INSERT INTO {moodle.prefix}company_users (companyid, userid, managertype, departmentid) "
                "VALUES (1, LAST_INSERT_ID(), %s, %s)",
                (managertype, department),
            )
    before = len(ses_messages())
    running = sidecar(moodle, SinkSettings(kind="ses", ses_from=ses_sender, deadline=5.0))
    user = replace(
        make_users(1, start=90_000)[0],
        departmentid=2,
        headers=iomad_headers(emailtoother="hr@partner.example", header_lines=["To:hr@partner.example"]),
    )
    outbox_id = create_user_iomad(admin, user)[1]
    wait_for(lambda: running.resolved() >= 1, 30, "the row resolved")
    running.stop()

    sent = ses_messages()[before:]
    to = sorted(parseaddr(m.destinations["ToAddresses"][0])[1] for m in sent)
    assert to == sorted([user.email, "hr@partner.example", "boss@academy.example"]), to
    assert all(m.subject == SUBJECT and f"password: {user.password}" in m.body for m in sent)
    copies = ledger_recipients(moodle, running.settings.state_schema, outbox_id)
    assert [(c["recipient_index"], c["kind"], c["status"]) for c in copies] == [
        (0, "user", "accepted"),
        (1, "emailtoother", "accepted"),
        (2, "manager", "accepted"),
    ]
    assert sorted(c["message_id"] for c in copies) == sorted(m.id for m in sent), "each copy's SES message id"
    assert all("***@" in c["address_masked"] and user.email not in c["address_masked"] for c in copies)
    assert ledger(moodle, running.settings.state_schema)[outbox_id]["status"] == "offloaded"


def ledger_recipients(moodle: MoodleDatabase, schema: str, outbox_id: int) -> list[dict[str, Any]]:
    connection = moodle.admin()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM `{schema}`.ledger_recipient WHERE outbox_id = %s ORDER BY recipient_index", (outbox_id,)
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    connection.close()
    return rows
