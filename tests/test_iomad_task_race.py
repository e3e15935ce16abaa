"""The sidecar against a real concurrent process that behaves like IOMAD's email task
(tests/faults/iomad_task.py: loads every unsent due row in one SELECT, takes milliseconds per
recipient, marks each row by id, in a tight loop under Moodle's own cron lock), during a
2,000-user IOMAD-shaped upload with a company manager, a department manager and an `emailtoother`
address: every (row, recipient) pair IOMAD would mail is mailed exactly once in total, ours plus
the task's. With `--moodle-lock none` the same run reports its duplicates instead of hiding them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cdc_offload.demo.moodle import create_user_iomad, iomad_headers, make_users
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import SinkSettings
from tests.faults.fixtures import fast_moto  # noqa: F401 - autouse
from tests.support import Sidecar, init_state, ledger, wait_for

USERS = 2000
HR_INBOX = "hr-inbox@acme-partner.example"
COMPANY_MANAGER = "boss@academy.example"
DEPARTMENT_MANAGER = "lead@academy.example"
HEADERS = iomad_headers(emailtoother=HR_INBOX, header_lines=[f"To:{HR_INBOX}"])
REPO = Path(__file__).resolve().parent.parent


def add_managers(moodle: MoodleDatabase) -> None:
    """A Sales department under the company's top one; the company manager sits at the top (IOMAD
    puts them there), the department manager in Sales (IOMAD mails them no copy)."""
    admin = moodle.admin()
    with admin.cursor() as c:
        c.execute(
            f"INSERT INTO {moodle.prefix}department (id, name, shortname, company, parent) "
            "VALUES (2, 'Sales', 's', 1, 1)"
        )
        for email, managertype, department in ((COMPANY_MANAGER, 1, 1), (DEPARTMENT_MANAGER, 2, 2)):
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
    admin.close()


def start_task(moodle: MoodleDatabase, stop_file: Path) -> subprocess.Popen[str]:
    server = moodle.server
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.iomad_task",
            server.host,
            str(server.port),
            "root",
            getattr(server, "password", "") or "",
            moodle.database,
            moodle.prefix,
            str(stop_file),
            "--per-copy-ms",
            "3",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )


def task_sends(moodle: MoodleDatabase) -> list[tuple[int, str]]:
    admin = moodle.admin()
    with admin.cursor() as c:
        c.execute("SELECT outbox_id, address FROM iomad_task_sent")
        rows = [(int(r[0]), str(r[1])) for r in c.fetchall()]
    admin.close()
    return rows


def unsettled(moodle: MoodleDatabase) -> int:
    admin = moodle.admin()
    with admin.cursor() as c:
        c.execute(f"SELECT COUNT(*) FROM {moodle.prefix}email WHERE sent IS NULL")
        (count,) = c.fetchone()
    admin.close()
    return int(count)


def copies_in_sqs(queue_url: str) -> list[tuple[int, str]]:
    """(outbox id, address) of every copy in the queue, read from moto's own state without
    receiving (so reading it twice sees the same messages)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(queue_url.rstrip("/").rsplit("/", 1)[1])
    documents = [json.loads(message.body) for message in list(queue._messages)]
    return [(d["outbox_id"], r["address"]) for d in documents for r in d["recipients"]]


def rows_sent_twice(moodle: MoodleDatabase, sink: SinkSettings, expected: Counter[tuple[int, str]]) -> int:
    ours = copies_in_sqs(sink.queue_url or "")
    return len({o for (o, _), n in (Counter(ours) + Counter(task_sends(moodle)) - expected).items() if n})


def duplicates_recorded(moodle: MoodleDatabase, schema: str) -> int:
    return sum(1 for row in ledger(moodle, schema).values() if row["status"] in ("duplicate_observed", "uncertain"))


def run_upload_against_the_task(
    moodle: MoodleDatabase, sink: SinkSettings, tmp_path: Path, lock: str
) -> dict[str, Any]:
    add_managers(moodle)
    settings = moodle.settings(
        sink,
        suppress="mark-sent",
        moodle_lock=lock,
        heartbeat=0.5,
        read_timeout=3.0,
        checkpoint_interval=0.2,
        pair_window=5.0,
    )
    # The sidecar will start from here, behind the upload (a restart, a lagging replica), so the
    # task has a backlog of due rows to take while the sidecar catches up on the same rows.
    init_state(settings)
    start = moodle.server.binlog_end()
    admin = moodle.admin()
    with admin.cursor() as c:
        c.execute(
            f"INSERT INTO `{settings.state_schema}`.checkpoint (consumer, binlog_file, binlog_offset, updated_at) "
            "VALUES (%s, %s, %s, UTC_TIMESTAMP(6))",
            (settings.consumer, start.file, start.offset),
        )
    admin.close()
    stop_file = tmp_path / f"stop-{lock}"
    task = start_task(moodle, stop_file)
    expected: Counter[tuple[int, str]] = Counter()
    created: list[int] = []

    def upload() -> None:
        admin = moodle.admin()
        for user in make_users(USERS, start=50_000):
            outbox_id = create_user_iomad(admin, replace(user, departmentid=2, headers=HEADERS))[1]
            created.append(outbox_id)
            expected.update([(outbox_id, user.email), (outbox_id, COMPANY_MANAGER), (outbox_id, HR_INBOX)])
        admin.close()

    uploader = threading.Thread(target=upload, name="upload", daemon=True)
    uploader.start()
    wait_for(lambda: len(created) >= 200, 60, "the upload to get going")
    sidecar = Sidecar(settings).start()
    sidecar_started = time.monotonic()
    uploader.join(300)
    assert len(created) == USERS
    wait_for(lambda: unsettled(moodle) == 0, 240, "every row sent by one side or the other")
    stop_file.touch()
    out, _ = task.communicate(timeout=120)
    if lock == "none":
        # The task's last marks reach the binlog after it stops: the sidecar reads them on. (The
        # test below asserts the count, with every figure in its message.)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: duplicates_recorded(moodle, settings.state_schema) >= rows_sent_twice(moodle, sink, expected),
                30,
                "every row both sides mailed recorded as a duplicate",
            )
    registry = sidecar.runtime.metrics.registry
    held_count = registry.get_sample_value("cdc_offload_moodle_lock_held_seconds_count") or 0
    held_sum = registry.get_sample_value("cdc_offload_moodle_lock_held_seconds_sum") or 0
    within_10ms = registry.get_sample_value("cdc_offload_moodle_lock_held_seconds_bucket", {"le": "0.01"}) or 0
    within_50ms = registry.get_sample_value("cdc_offload_moodle_lock_held_seconds_bucket", {"le": "0.05"}) or 0
    busy = registry.get_sample_value("cdc_offload_moodle_lock_busy_total") or 0
    sidecar_seconds = time.monotonic() - sidecar_started
    sidecar.stop()

    ours = copies_in_sqs(sink.queue_url or "")
    theirs = task_sends(moodle)
    delivered = Counter(ours) + Counter(theirs)
    recorded = ledger(moodle, sidecar.settings.state_schema)
    statuses = Counter(row["status"] for row in recorded.values())
    outcomes = Counter(f"{row['status']}/{row['reason']}" for row in recorded.values())
    figures = {
        "lock": lock,
        "expected_pairs": sum(expected.values()),
        "by_sidecar": len(ours),
        "by_task": len(theirs),
        "lost": sum((expected - delivered).values()),
        "duplicate_pairs": sum((delivered - expected).values()),
        "rows_sent_twice": len({o for (o, _), n in (delivered - expected).items() if n}),
        "ledger": dict(outcomes),
        "task": out.strip(),
        "claims_under_the_lock": int(held_count),
        "lock_held_mean_ms": round(1000 * held_sum / held_count, 2) if held_count else None,
        "claims_within_10ms": int(within_10ms),
        "claims_within_50ms": int(within_50ms),
        "claims_put_off_task_running": int(busy),
        "lock_duty_percent": round(100 * held_sum / sidecar_seconds, 2),
    }
    print(f"IOMAD-TASK-RACE {json.dumps(figures)}")
    return {"figures": figures, "statuses": statuses, "expected": expected, "delivered": delivered}


@pytest.mark.slow
def test_with_moodles_lock_every_copy_is_mailed_exactly_once(
    moodle: MoodleDatabase, sqs_sink: SinkSettings, tmp_path: Path
) -> None:
    result = run_upload_against_the_task(moodle, sqs_sink, tmp_path, "mysql")
    figures = result["figures"]
    assert figures["lost"] == 0, figures
    assert figures["duplicate_pairs"] == 0, figures
    assert result["delivered"] == result["expected"], figures
    assert "claimed" not in result["statuses"]


@pytest.mark.slow
def test_without_the_lock_duplicates_are_counted_not_hidden(
    moodle: MoodleDatabase, sqs_sink: SinkSettings, tmp_path: Path
) -> None:
    result = run_upload_against_the_task(moodle, sqs_sink, tmp_path, "none")
    figures = result["figures"]
    assert figures["lost"] == 0, figures
    # Every row both sides mailed is in the ledger as a duplicate (observed, or uncertain).
    counted = result["statuses"]["duplicate_observed"] + result["statuses"]["uncertain"]
    assert counted >= figures["rows_sent_twice"], figures
    assert result["statuses"]["duplicate_observed"] <= figures["rows_sent_twice"], f"no false alarm: {figures}"
