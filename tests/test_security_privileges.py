"""Two accounts, least privilege, and the tests use exactly these: `init` prints the GRANTs, the
suite's accounts are made from them, the running sidecar connects only as them, each account can
do its job and nothing else, and `check` verifies the grants and warns about anything broader."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from click.testing import CliRunner

from cdc_offload.cli import main
from cdc_offload.demo.moodle import NewUser, create_user_iomad
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.mysql_connection import connect
from cdc_offload.preflight import parse_grants, reader_privilege_checks, writer_privilege_checks
from cdc_offload.settings import Dsn, Settings, SinkSettings
from cdc_offload.store import grant_statements
from tests.support import Sidecar, init_state, wait_for

FAST = {"heartbeat": 0.5, "read_timeout": 3.0, "checkpoint_interval": 0.2}


def env_for(moodle: MoodleDatabase, queue_url: str, **extra: str) -> dict[str, str]:
    return {
        "CDC_OFFLOAD_SOURCE_DSN": moodle.server.url(moodle.reader.user, database=moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD": moodle.reader.password,
        "CDC_OFFLOAD_WRITER_DSN": moodle.server.url(moodle.writer.user, database=moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": moodle.writer.password,
        "CDC_OFFLOAD_STATE_SCHEMA": f"cdc_{moodle.database}",
        "CDC_OFFLOAD_QUEUE_URL": queue_url,
        **extra,
    }


def grants_of(moodle: MoodleDatabase, user: str) -> list[str]:
    admin = moodle.server.connect()
    with admin.cursor() as cursor:
        cursor.execute(f"SHOW GRANTS FOR '{user}'@'%'")
        lines = [str(row[0]) for row in cursor.fetchall()]
    admin.close()
    return lines


def as_account(dsn: Dsn, statement: str) -> int:
    """0 when `dsn`'s account may run `statement`, else the MySQL error code."""
    connection = connect(dsn, autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.fetchall()
        return 0
    except pymysql.err.MySQLError as error:
        return int(error.args[0])
    finally:
        connection.rollback()
        connection.close()


def test_init_prints_the_grants_and_the_suites_accounts_are_made_from_them(
    moodle: MoodleDatabase, sqs_queue: str
) -> None:
    env = env_for(moodle, sqs_queue)
    result = CliRunner().invoke(
        main, ["init", "--reader-user", moodle.reader.user, "--writer-user", moodle.writer.user], env=env
    )
    assert result.exit_code == 0, result.output
    settings = moodle.settings(SinkSettings(queue_url=sqs_queue))
    printed = [line for line in result.output.splitlines() if line.startswith(("GRANT", "CREATE USER"))]
    assert printed == grant_statements(settings, moodle.reader.user, moodle.writer.user)

    # The accounts the `moodle` fixture made (and every test uses) hold exactly these grants.
    assert "root" not in (moodle.reader.user, moodle.writer.user)
    assert moodle.reader.user != moodle.writer.user
    reader = {line.split(" TO ")[0] for line in grants_of(moodle, moodle.reader.user)}
    writer = {line.split(" TO ")[0] for line in grants_of(moodle, moodle.writer.user)}
    db = moodle.database
    assert reader == {
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*",  # MariaDB's name for REPLICATION CLIENT
        f"GRANT SELECT ON `{db}`.`mdl_user`",
        f"GRANT SELECT ON `{db}`.`mdl_email`",
        # Who else receives a row (IOMAD's company managers, supervisors, templates, site settings).
        *(
            f"GRANT SELECT ON `{db}`.`mdl_{table}`"
            for table in ("company", "company_users", "department", "user_info_data", "email_template", "config")
        ),
    }
    assert writer == {
        "GRANT USAGE ON *.*",
        f"GRANT ALL PRIVILEGES ON `cdc_{db}`.*",
        f"GRANT SELECT, UPDATE (`sent`), DELETE ON `{db}`.`mdl_email`",
    }


def test_the_running_sidecar_connects_only_as_the_reader_and_the_writer(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    settings = moodle.settings(sqs_sink, **FAST)
    assert (settings.source.user, settings.writer.user) == (moodle.reader.user, moodle.writer.user)
    running = Sidecar(settings).start()
    create_user_iomad(moodle.admin(), NewUser("who", "who@example.org", "Pw#who"))
    wait_for(lambda: running.resolved() >= 1, 30, "the row resolved")

    def connections() -> dict[str, set[str]]:
        admin = moodle.server.connect()
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT USER, COMMAND FROM information_schema.PROCESSLIST WHERE USER IN (%s, %s)",
                (moodle.reader.user, moodle.writer.user),
            )
            found: dict[str, set[str]] = {}
            for user, command in cursor.fetchall():
                found.setdefault(str(user), set()).add(str(command))
        admin.close()
        return found

    seen = wait_for(lambda: (c := connections()) and len(c) == 2 and c, 10, "both accounts connected")
    running.stop()
    assert any("Binlog Dump" in command for command in seen[moodle.reader.user]), "the binlog is read as the reader"
    assert seen[moodle.writer.user], "the primary is written as the writer"


def test_each_account_can_do_its_job_and_nothing_else(moodle: MoodleDatabase, sqs_queue: str) -> None:
    init_state(moodle.settings(SinkSettings(queue_url=sqs_queue)))
    db, state = moodle.database, f"cdc_{moodle.database}"
    reader, writer = moodle.reader, moodle.writer
    denied_table, denied_column, denied_db, needs_privilege = 1142, 1143, 1044, 1227

    assert as_account(reader, f"SELECT id FROM `{db}`.mdl_user LIMIT 1") == 0
    assert as_account(reader, f"SELECT id FROM `{db}`.mdl_email LIMIT 1") == 0
    assert as_account(reader, "SHOW MASTER STATUS") == 0
    assert as_account(reader, f"SELECT id FROM `{db}`.mdl_context LIMIT 1") == denied_table
    assert as_account(reader, f"DELETE FROM `{db}`.mdl_email") == denied_table
    assert as_account(reader, f"UPDATE `{db}`.mdl_email SET sent = 1") == denied_table
    assert as_account(reader, f"SELECT * FROM `{state}`.ledger") in (denied_table, denied_db)

    assert as_account(writer, f"SELECT id, userid, sent FROM `{db}`.mdl_email LIMIT 1") == 0
    assert as_account(writer, f"DELETE FROM `{db}`.mdl_email WHERE id = -1") == 0
    assert as_account(writer, f"UPDATE `{db}`.mdl_email SET sent = 1 WHERE id = -1") == 0
    assert as_account(writer, f"UPDATE `{db}`.mdl_email SET body = '' WHERE id = -1") == denied_column
    assert as_account(writer, f"INSERT INTO `{db}`.mdl_email (userid, modifiedtime, body) VALUES (1, 1, '')") in (
        denied_table,
        denied_column,
    )
    assert as_account(writer, f"SELECT id FROM `{db}`.mdl_user LIMIT 1") == denied_table
    assert as_account(writer, f"DELETE FROM `{db}`.mdl_user WHERE id = -1") == denied_table
    assert as_account(writer, "SHOW MASTER STATUS") == needs_privilege
    assert as_account(writer, f"INSERT INTO `{state}`.checkpoint SELECT * FROM `{state}`.checkpoint WHERE 0") == 0


def test_check_verifies_the_grants_and_warns_about_broader_ones(moodle: MoodleDatabase, sqs_queue: str) -> None:
    env = env_for(moodle, sqs_queue)
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    clean = CliRunner().invoke(main, ["check"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "ok    reader privileges" in clean.output and "ok    writer privileges" in clean.output
    assert "warn" not in clean.output and "FAIL" not in clean.output

    db = moodle.database
    admin = moodle.server.connect()
    with admin.cursor() as cursor:
        cursor.execute(f"GRANT SELECT ON `{db}`.* TO '{moodle.reader.user}'@'%'")
        cursor.execute(f"GRANT PROCESS ON *.* TO '{moodle.reader.user}'@'%'")
        cursor.execute(f"GRANT INSERT, UPDATE ON `{db}`.`mdl_email` TO '{moodle.writer.user}'@'%'")
        cursor.execute(f"GRANT SELECT ON `{db}`.`mdl_user` TO '{moodle.writer.user}'@'%' WITH GRANT OPTION")
    broader = CliRunner().invoke(main, ["check"], env=env)
    assert broader.exit_code == 0, "broader is a warning, not a refusal"
    reader_line = next(line for line in broader.output.splitlines() if line.startswith("warn  reader least"))
    writer_line = next(line for line in broader.output.splitlines() if line.startswith("warn  writer least"))
    assert f"SELECT ON `{db}`.*" in reader_line and "PROCESS ON *.*" in reader_line
    assert f"INSERT ON `{db}`.`mdl_email`" in writer_line and f"UPDATE ON `{db}`.`mdl_email`" in writer_line
    assert "WITH GRANT OPTION" in writer_line
    assert "IDENTIFIED BY" not in broader.output, "the password hash in SHOW GRANTS is never repeated"

    with admin.cursor() as cursor:
        cursor.execute(f"REVOKE DELETE ON `{db}`.`mdl_email` FROM '{moodle.writer.user}'@'%'")
        cursor.execute(f"REVOKE REPLICATION SLAVE ON *.* FROM '{moodle.reader.user}'@'%'")
    admin.close()
    missing = CliRunner().invoke(main, ["check"], env=env)
    assert missing.exit_code == 1
    assert f"FAIL  writer privileges: the writer lacks DELETE ON `{db}`.`mdl_email`" in missing.output
    assert "FAIL  reader privileges: the reader lacks REPLICATION SLAVE ON *.*" in missing.output
    # mark-sent needs UPDATE of `sent`, which the writer still has (and now table-wide UPDATE too).
    marking = CliRunner().invoke(main, ["check", "--suppress", "mark-sent"], env=env)
    assert "ok    writer privileges" in marking.output


def settings_for(db: str = "moodle", state: str = "cdc_offload", suppress: Any = "delete") -> Settings:
    return Settings(
        source=Dsn("h", 3306, "r", db),
        writer=Dsn("h", 3306, "w", db),
        sink=SinkSettings(queue_url="q"),
        state_schema=state,
        suppress=suppress,
    )


@pytest.mark.parametrize(
    ("lines", "reader_ok", "warned"),
    [
        # MySQL 8 spells the same grants its own way.
        (
            [
                "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `r`@`%`",
                "GRANT SELECT ON `moodle`.`mdl_user` TO `r`@`%`",
                "GRANT SELECT ON `moodle`.`mdl_email` TO `r`@`%`",
            ],
            True,
            "",
        ),
        (["GRANT ALL PRIVILEGES ON *.* TO `r`@`%` WITH GRANT OPTION"], True, "ALL PRIVILEGES ON *.*"),
        (
            ["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `r`@`%`", "GRANT `moodle_readers` TO `r`@`%`"],
            False,
            "grants not checked (roles or other kinds): GRANT `moodle_readers`",
        ),
    ],
)
def test_grant_lines_of_either_server_are_read(lines: list[str], reader_ok: bool, warned: str) -> None:
    results = reader_privilege_checks(lines, settings_for())
    assert results[0].ok is reader_ok
    warnings = " ".join(r.problem for r in results if r.warning)
    assert warned in warnings if warned else not warnings


def test_column_grants_and_mark_sent_are_understood() -> None:
    lines = [
        "GRANT USAGE ON *.* TO `w`@`%`",
        "GRANT SELECT, UPDATE (`sent`) ON `moodle`.`mdl_email` TO `w`@`%`",
        "GRANT ALL PRIVILEGES ON `cdc_offload`.* TO `w`@`%`",
    ]
    assert [r.ok for r in writer_privilege_checks(lines, settings_for(suppress="mark-sent"))] == [True]
    (deleting,) = writer_privilege_checks(lines, settings_for(suppress="delete"))
    assert not deleting.ok and "DELETE ON `moodle`.`mdl_email`" in deleting.problem
    grants, unread = parse_grants(["GRANT UPDATE (`sent`, `subject`) ON `moodle`.`mdl_email` TO `w`@`%`"])
    assert grants[0].columns == frozenset({"sent", "subject"}) and not unread
    wider = writer_privilege_checks(
        [*lines, "GRANT UPDATE (`sent`, `subject`) ON `moodle`.`mdl_email` TO `w`@`%`"], settings_for()
    )
    assert any("UPDATE (`sent`, `subject`)" in r.problem for r in wider if r.warning)
