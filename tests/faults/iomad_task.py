"""A stand-in for IOMAD's email task, run as a process of its own: what `email_cron()` does with
the outbox, in the order it does it (shared/reference/iomad-email-cron.md, sections 1-3).

Each run: take Moodle's cron lock for `\\local_email\\task\\cron_task` with timeout 0 (held: skip
this run), load every unsent due row of a live user in ONE SELECT, then per row "send" each
recipient (user, template emailto other addresses, company managers of the user's department
chain) taking `--per-copy-ms` each, record each send in `iomad_task_sent`, and mark the row
`sent = modifiedtime = now` by id. Release the lock, pause, run again, until the stop file exists.

Usage: python -m tests.faults.iomad_task HOST PORT USER PASSWORD DATABASE PREFIX STOP_FILE [--per-copy-ms N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import phpserialize
import pymysql

from cdc_offload.moodle_lock import task_lock_key


def recipients(cursor: Any, prefix: str, userid: int, email: str, headers: str | None) -> list[str]:
    copies = [email]
    template: dict[str, Any] = {}
    if headers:
        parsed = phpserialize.loads(headers.encode(), object_hook=phpserialize.phpobject, decode_strings=True)
        template = parsed["template"]._asdict()
    for field in ("emailtoother", "emailccother"):
        copies += [a.strip() for a in str(template.get(field) or "").split(",") if a.strip()]
    if not int(template.get("disabledmanager") or 0):
        cursor.execute(f"SELECT departmentid FROM {prefix}company_users WHERE userid = %s", (userid,))
        departments = {int(r[0]) for r in cursor.fetchall()}
        chain = set(departments)
        while departments:
            marks = ", ".join(["%s"] * len(departments))
            cursor.execute(f"SELECT parent FROM {prefix}department WHERE id IN ({marks})", tuple(departments))
            departments = {int(r[0]) for r in cursor.fetchall() if r[0]} - chain
            chain |= departments
        if chain:
            marks = ", ".join(["%s"] * len(chain))
            cursor.execute(
                f"SELECT DISTINCT u.email FROM {prefix}company_users cu JOIN {prefix}user u ON u.id = cu.userid "
                f"WHERE cu.managertype = 1 AND cu.departmentid IN ({marks}) AND u.deleted = 0 AND u.suspended = 0",
                tuple(chain),
            )
            copies += [str(r[0]) for r in cursor.fetchall()]
    return copies


def one_run(connection: Any, lock: str, prefix: str, per_copy: float) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, 0)", (lock,))
        if cursor.fetchone()[0] != 1:
            return False
        try:
            cursor.execute(
                f"SELECT e.id, e.userid, u.email, e.headers FROM {prefix}email e "
                f"JOIN {prefix}user u ON u.id = e.userid WHERE e.sent IS NULL AND e.due < UNIX_TIMESTAMP() "
                "AND u.deleted = 0 AND u.suspended = 0"
            )
            for outbox_id, userid, email, headers in cursor.fetchall():
                for address in recipients(cursor, prefix, int(userid), str(email), headers):
                    time.sleep(per_copy)  # one SMTP conversation per copy
                    cursor.execute(
                        "INSERT INTO iomad_task_sent (outbox_id, address) VALUES (%s, %s)", (outbox_id, address)
                    )
                now = int(time.time())
                cursor.execute(
                    f"UPDATE {prefix}email SET sent = %s, modifiedtime = %s WHERE id = %s", (now, now, outbox_id)
                )
        finally:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("host", "port", "user", "password", "database", "prefix", "stop_file"):
        parser.add_argument(name)
    parser.add_argument("--per-copy-ms", type=float, default=5.0)
    parser.add_argument("--pause-ms", type=float, default=50.0)
    args = parser.parse_args()
    connection = pymysql.connect(
        host=args.host,
        port=int(args.port),
        user=args.user,
        password=args.password,
        database=args.database,
        autocommit=True,
        charset="utf8mb4",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS iomad_task_sent (id BIGINT AUTO_INCREMENT PRIMARY KEY, outbox_id BIGINT, "
            "address VARCHAR(255))"
        )
    lock = task_lock_key(args.database, args.prefix)
    runs = skipped = 0
    stop = Path(args.stop_file)
    while not stop.exists():
        if one_run(connection, lock, args.prefix, args.per_copy_ms / 1000):
            runs += 1
        else:
            skipped += 1
        time.sleep(args.pause_ms / 1000)  # the cron's own cadence between runs, not a wait on a condition
    one_run(connection, lock, args.prefix, 0.0)
    print(f"runs={runs} skipped={skipped}", flush=True)


if __name__ == "__main__":
    main()
