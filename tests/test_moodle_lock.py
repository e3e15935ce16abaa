"""The lock IOMAD's email task runs under: our key is Moodle's, and while someone holds it the
sidecar claims nothing (it waits), then offloads once it is free."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_offload.demo.moodle import create_user_iomad, make_users
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.moodle_lock import EMAIL_TASK, task_lock_key
from cdc_offload.settings import SinkSettings
from tests.support import Sidecar, ledger, outbox_rows, wait_for

SITES = [("moodle", "mdl_"), ("iomad_prod", "m43_"), ("Academy-LMS", "x_")]


def test_the_reference_example_has_two_underscores() -> None:
    # shared/reference/iomad-email-cron.md, section 1: SHA1('moodle:mdl__cron_\local_email\task\cron_task').
    import hashlib

    text = "moodle:mdl__cron_\\local_email\\task\\cron_task"
    assert task_lock_key("moodle", "mdl_") == hashlib.sha1(text.encode()).hexdigest()


@pytest.mark.parametrize(("database", "prefix"), SITES)
def test_key_equals_what_the_server_computes_from_moodles_formula(db_server: Any, database: str, prefix: str) -> None:
    """The formula as SQL on the real server (its own SHA1 and CONCAT), as Moodle's MySQL lock factory
    builds the name: <dbname> ':' <prefix> '_' <type> '_' <resource>, type 'cron'."""
    connection = db_server.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT SHA1(CONCAT(%s, ':', %s, '_cron_', %s))", (database, prefix, EMAIL_TASK))
        (expected,) = cursor.fetchone()
    connection.close()
    assert task_lock_key(database, prefix) == expected


@pytest.mark.slow
def test_while_the_tasks_lock_is_held_the_sidecar_waits_instead_of_claiming(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    settings = moodle.settings(
        sqs_sink, heartbeat=0.5, read_timeout=3.0, checkpoint_interval=0.2, pair_window=2.0, moodle_lock_wait=0.2
    )
    assert settings.moodle_task_lock == task_lock_key(moodle.database, moodle.prefix)
    cron = moodle.admin()  # Moodle's cron connection, running IOMAD's email task
    with cron.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, 0)", (settings.moodle_task_lock,))
        assert cursor.fetchone()[0] == 1
    running = Sidecar(settings).start()
    admin = moodle.admin()
    ids = [create_user_iomad(admin, user)[1] for user in make_users(5, start=70_000)]
    wait_for(lambda: running.runtime.metrics.task_lock_busy._value.get() >= 3, 30, "the sidecar to find the lock held")
    assert set(ids) <= set(outbox_rows(moodle)), "nothing was claimed or suppressed while the task held its lock"
    assert all(sent is None for i, sent in outbox_rows(moodle).items() if i in ids)
    assert not set(ledger(moodle, settings.state_schema)) & set(ids), "no row was claimed"

    with cron.cursor() as cursor:
        cursor.execute("SELECT RELEASE_LOCK(%s)", (settings.moodle_task_lock,))
    wait_for(lambda: not set(ids) & set(outbox_rows(moodle)), 30, "the rows offloaded once the lock is free")
    running.stop()
    recorded = ledger(moodle, settings.state_schema)
    assert {recorded[i]["status"] for i in ids} == {"offloaded"}
    cron.close()
    admin.close()


def test_a_claim_that_fails_half_way_leaves_every_row_to_moodle_and_the_lock_free(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    """The claim's ledger write fails (a real error from the server: the table is gone) after its
    outbox UPDATE: nothing of the claim may stay, or the rows would be hidden from Moodle and unknown
    to us; and IOMAD's task must not be locked out."""
    from cdc_offload.model import Position, Reason, Resolution, Status
    from cdc_offload.store import Store, StoreError
    from tests.support import init_state

    settings = moodle.settings(sqs_sink)
    init_state(settings)
    admin = moodle.admin()
    rows = [create_user_iomad(admin, user) for user in make_users(3, start=71_000)]
    store = Store(settings)
    store.connect()
    assert store.try_acquire_lock()
    schema = settings.state_schema
    with admin.cursor() as cursor:
        cursor.execute(f"RENAME TABLE `{schema}`.ledger TO `{schema}`.ledger_away")
    claims = [
        Resolution(outbox_id, userid, Status.CLAIMED, Reason.NONE, Position("binlog.000001", 4), 0)
        for userid, outbox_id in rows
    ]
    with pytest.raises(StoreError):
        store.claim(claims, settings.moodle_task_lock, 1.0)
    with admin.cursor() as cursor:
        cursor.execute(f"RENAME TABLE `{schema}`.ledger_away TO `{schema}`.ledger")
        cursor.execute("SELECT IS_FREE_LOCK(%s)", (settings.moodle_task_lock,))
        assert cursor.fetchone()[0] == 1, "IOMAD's task can take its lock"
    outbox = outbox_rows(moodle)
    assert all(outbox[outbox_id] is None for _, outbox_id in rows), "every row still unsent, for Moodle"
    store.close()
    admin.close()
