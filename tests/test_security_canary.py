"""The canary: one recognisable secret in every place a secret lives (a user's temporary password
in the outbox body, the reader's and the writer's database passwords, the AWS secret key), then
everything the running program emits is searched for it: stdout and stderr of the real process at
DEBUG, including the log lines written while it recovers from a killed binlog connection and a
killed writer connection; /metrics, /healthz, /readyz and /ledger; the ledger and checkpoint tables;
and the CLI's own output (`check`, `ledger`). The only place the canary may appear is the message
AWS accepted for that user."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from cdc_offload.cli import main
from cdc_offload.demo.moodle import NewUser, create_user_iomad
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import SinkSettings
from tests.conftest import CANARY
from tests.support import ledger, outbox_rows, sqs_messages, wait_for
from tests.test_bad_input import SidecarProcess, insert_outbox, insert_user

READER_PASSWORD = f"{CANARY}-reader"
WRITER_PASSWORD = f"{CANARY}-writer"
AWS_SECRET = f"{CANARY}-aws"
SECRETS = (CANARY, READER_PASSWORD, WRITER_PASSWORD, AWS_SECRET, urllib.parse.quote(CANARY))


def assert_clean(where: str, text: str | bytes) -> None:
    content = text.decode(errors="replace") if isinstance(text, bytes) else text
    for secret in SECRETS:
        assert secret not in content, f"a secret reached {where}"
    assert "canary@example.org" not in content, f"an address reached {where}"


def kill_connections(moodle: MoodleDatabase, user: str, command: str | None = None) -> int:
    admin = moodle.admin()
    killed = 0
    with admin.cursor() as cursor:
        cursor.execute("SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
        for thread_id, thread_command in cursor.fetchall():
            if command is None or command in str(thread_command):
                cursor.execute(f"KILL {int(thread_id)}")
                killed += 1
    admin.close()
    return killed


@pytest.mark.slow
def test_the_canary_never_leaves_the_message_it_belongs_to(
    moodle: MoodleDatabase, sqs_sink: SinkSettings, tmp_path: Path
) -> None:
    reader_file = tmp_path / "reader.pw"
    writer_file = tmp_path / "writer.pw"
    reader_file.write_text(READER_PASSWORD + "\n")
    writer_file.write_text(WRITER_PASSWORD)
    queue_url = sqs_sink.queue_url or ""
    running = SidecarProcess.for_moodle(
        moodle,
        queue_url,
        tmp_path,
        CDC_OFFLOAD_LOG_LEVEL="DEBUG",
        CDC_OFFLOAD_SOURCE_PASSWORD_FILE=str(reader_file),
        CDC_OFFLOAD_PAIR_WINDOW="2",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
    )
    admin = moodle.admin()  # the state schema exists now; the accounts get their canary passwords
    with admin.cursor() as cursor:
        cursor.execute(f"ALTER USER '{moodle.reader.user}'@'%%' IDENTIFIED BY %s", (READER_PASSWORD,))
        cursor.execute(f"ALTER USER '{moodle.writer.user}'@'%%' IDENTIFIED BY %s", (WRITER_PASSWORD,))
        # Lets a row arrive that the decoder must refuse (a NULL where IOMAD never writes one).
        cursor.execute("ALTER TABLE mdl_email MODIFY subject VARCHAR(255) NULL")
    # Passwords from a file (named on the command line) and a *_FILE variable, never the secret itself.
    del running.env["CDC_OFFLOAD_SOURCE_PASSWORD"], running.env["CDC_OFFLOAD_WRITER_PASSWORD"]
    running.extra_args = ["--writer-password-file", str(writer_file)]
    running.skip_checks = False
    running.start()
    schema = running.env["CDC_OFFLOAD_STATE_SCHEMA"]

    user_id, offloaded = create_user_iomad(admin, NewUser("canary", "canary@example.org", CANARY))
    bad_user, bad_address = create_user_iomad(admin, NewUser("canary-noaddr", "canary@", CANARY))
    big_user = insert_user(admin, "canary@example.org")
    too_large = insert_outbox(admin, big_user, body=f"<p>password: {CANARY}</br></p>" + "x" * 1_100_000)
    broken_user = insert_user(admin, "canary@example.org")
    broken = insert_outbox(admin, broken_user, subject=None, body=f"<p>password: {CANARY}</br></p>")
    wait_for(lambda: len(ledger(moodle, schema)) >= 3, 30, "three rows in the ledger")

    # Failures on the way, whose messages go to the log: the binlog link and the writer cut.
    assert kill_connections(moodle, moodle.reader.user, "Binlog Dump") >= 1
    assert kill_connections(moodle, moodle.writer.user) >= 1
    late_user, late = create_user_iomad(admin, NewUser("canary-late", "canary@example.org", CANARY))
    wait_for(lambda: late in ledger(moodle, schema), 60, "the row after the recovery")
    # The same id again (a restore): the ledger already has it, which is logged at DEBUG.
    insert_outbox(admin, late_user, oid=late, body=f"<p>password: {CANARY}</br></p>")

    def debug_logged() -> bool:
        return '"already_handled"' in (tmp_path / "stdout").read_text()

    wait_for(debug_logged, 30, "the DEBUG line")
    http = {path: running.get(path) for path in ("/metrics", "/healthz", "/readyz")}
    for uid in (user_id, bad_user, big_user, broken_user, late_user):
        http[f"/ledger/users/{uid}"] = running.get(f"/ledger/users/{uid}")
    http["/ledger/users/<canary>"] = running.get("/ledger/users/" + urllib.parse.quote(CANARY, safe=""))
    assert running.stop() == 0
    stdout, stderr = running.output()

    # stdout: one JSON object per line, at DEBUG, through the recoveries, with no secret.
    events = [orjson.loads(line) for line in stdout.splitlines()]
    names = {e["event"] for e in events}
    levels = {e["level"] for e in events}
    assert {"preflight_ok", "outbox_row_resolved", "row_undecodable", "already_handled"} <= names, names
    assert {"debug", "info", "warning"} <= levels
    assert {"reader_restart", "recovering"} & names, "the killed connections were logged"
    assert_clean("stdout", stdout)
    assert_clean("stderr", stderr)

    for path, (status, body) in http.items():
        assert status in (200, 404), (path, status)
        assert_clean(path, body)
    assert http["/metrics"][0] == 200 and b"cdc_offload_jobs_total" in http["/metrics"][1]
    assert orjson.loads(http[f"/ledger/users/{user_id}"][1])["rows"][0]["status"] == "offloaded"

    connection = moodle.admin()
    with connection.cursor() as cursor:
        for table in ("ledger", "checkpoint"):
            cursor.execute(f"SELECT * FROM `{schema}`.`{table}`")
            assert_clean(f"the {table} table", repr(cursor.fetchall()))
    connection.close()

    env = {
        **{k: v for k, v in running.env.items() if k != "CDC_OFFLOAD_LOG_LEVEL"},
        "CDC_OFFLOAD_WRITER_PASSWORD_FILE": str(writer_file),
    }
    for args in (["check"], ["ledger", "--user", str(user_id), "--json"], ["position", "show"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        assert_clean(f"`cdc-offload {args[0]}`", result.output)

    # Where it belongs: the message AWS accepted, and nowhere else.
    recorded = ledger(moodle, schema)
    assert recorded[offloaded]["status"] == recorded[late]["status"] == "offloaded"
    assert (recorded[bad_address]["status"], recorded[bad_address]["reason"]) == ("skipped", "bad_address")
    assert (recorded[too_large]["status"], recorded[too_large]["reason"]) == ("fallback", "too_large")
    assert broken not in recorded or recorded[broken]["status"] != "offloaded"
    remaining = outbox_rows(moodle)
    assert {bad_address, too_large, broken, late} <= set(remaining) and offloaded not in remaining
    messages = sqs_messages(queue_url)
    assert sorted(m["outbox_id"] for m in messages) == sorted([offloaded, late])
    assert all(f"password: {CANARY}</br>" in m["html_body"] for m in messages)
