"""`cdc-offload demo`: the whole flow on a throwaway MariaDB and moto's AWS stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import boto3

from cdc_offload import logs
from cdc_offload.demo.moodle import NewUser, create_user_iomad, make_users, unrelated_noise
from cdc_offload.demo.stack import moodle_database, moto_server
from cdc_offload.runtime import build
from cdc_offload.sandbox import running_mariadb
from cdc_offload.settings import SinkSettings
from cdc_offload.store import Store

DEMO_USERS = 300


def _left_alone_cases() -> list[tuple[str, NewUser]]:
    base = NewUser(username="", email="", password="Demo#pw42")
    return [
        ("suspended user", replace(base, username="demo_suspended", email="suspended@example.org", suspended=1)),
        ("no address", replace(base, username="demo_noaddress", email="")),
        ("another template", replace(base, username="demo_reset", email="reset@example.org", template="user_reset")),
        ("scheduled for later", replace(base, username="demo_later", email="later@example.org", due_offset=3600)),
        ("already sent", replace(base, username="demo_sent", email="sent@example.org", sent=int(time.time()))),
    ]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)  # polling a condition with a deadline
    return condition()


def run_demo(echo: Callable[[str], None] = print, users: int = DEMO_USERS) -> int:
    logs.configure("WARNING")
    echo("starting a throwaway MariaDB (binlog on) and an in-process AWS stand-in (moto) ...")
    with running_mariadb() as server, moto_server() as endpoint:
        moodle = moodle_database(server)
        queue_url = boto3.client("sqs").create_queue(QueueName="credential-emails")["QueueUrl"]
        settings = moodle.settings(SinkSettings(queue_url=queue_url))
        store = Store(settings)
        store.connect()
        store.ensure_schema()
        store.close()
        runtime = build(settings)
        stop = threading.Event()
        thread = threading.Thread(target=runtime.pipeline.run, args=(stop,), name="pipeline", daemon=True)
        thread.start()
        if not wait_until(lambda: runtime.health.role == "active" and runtime.health.healthy(), 30):
            echo("the pipeline did not start")
            return 1
        echo(f"MariaDB on 127.0.0.1:{server.port}, AWS stand-in at {endpoint}, queue {queue_url}")
        echo(f"creating {users} users the way IOMAD does (12 transactions each) plus unrelated log rows ...")
        admin = moodle.admin()
        started = time.monotonic()
        created: list[int] = []
        for user in make_users(users):
            created.append(create_user_iomad(admin, user)[1])
            unrelated_noise(admin, 2)
        special = {label: create_user_iomad(admin, user)[1] for label, user in _left_alone_cases()}
        created += special.values()
        echo(f"created in {time.monotonic() - started:.1f}s; waiting for the sidecar to resolve every outbox row ...")
        done = wait_until(lambda: runtime.pipeline.tally.outcomes.total() >= len(created), 60)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(30)
        runtime.dispatcher.close()
        with admin.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {moodle.prefix}email WHERE sent IS NULL")
            unsent = {int(row[0]) for row in cursor.fetchall()}
        admin.close()
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        tally = runtime.pipeline.tally.outcomes
        echo("")
        echo(f"{'status':<10} {'reason':<16} {'rows':>6}")
        for (status, reason), count in sorted(tally.items()):
            echo(f"{status:<10} {reason:<16} {count:>6}")
        offloaded = tally[("offloaded", "none")]
        echo("")
        echo(f"messages in SQS: {attributes['ApproximateNumberOfMessages']} (offloaded: {offloaded})")
        regular = [outbox for outbox in created if outbox not in special.values()]
        still_queued = [outbox for outbox in regular if outbox in unsent]
        echo(
            f"handled rows still in the outbox: {len(still_queued)} of {len(regular)} (0 means Moodle sends none twice)"
        )
        left = sorted(label for label, outbox in special.items() if outbox in unsent or label == "already sent")
        echo(f"left for Moodle as they should be: {', '.join(left)}")
        echo(f"all {len(created)} rows resolved in {elapsed:.1f}s" if done else "NOT every row was resolved in time")
        ok = (
            done and not still_queued and offloaded == users and int(attributes["ApproximateNumberOfMessages"]) == users
        )
        return 0 if ok else 1
