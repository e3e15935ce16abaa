"""The source server changing under a running reader (issue 12, part 4), on real MariaDB servers:
a session writing watched rows in statement format, row metadata set back to MINIMAL, and
`binlog_checksum` changed while the checkpoint sits in a file written under the old setting.

The last two change global settings, so they run on a server of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdc_offload.demo.moodle import NewUser, create_user_iomad
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.model import ChangeEvent, Checkpoint, Commit, EventCounts, OutboxRow, Status, Undecodable, UserRow
from cdc_offload.sandbox import MariaDBSandbox, running_mariadb
from cdc_offload.settings import SinkSettings
from cdc_offload.source.binlog import FastBinlogReader
from cdc_offload.source.server_facts import SourceRefused
from tests.conftest import CANARY
from tests.support import Sidecar, ledger, outbox_rows, wait_for


@pytest.fixture(scope="module")
def own_server() -> Iterator[MariaDBSandbox]:
    with running_mariadb() as sandbox:
        yield sandbox


def read(moodle: MoodleDatabase, start: Checkpoint, **overrides: Any) -> list[Any]:
    settings = moodle.settings(SinkSettings(queue_url="unused"), read_timeout=10.0, **overrides)
    reader = FastBinlogReader(settings, start, blocking=False)
    try:
        return [item for item in reader if not isinstance(item, EventCounts)]
    finally:
        reader.close()


def user(n: int) -> NewUser:
    return NewUser(username=f"changes{n}", email=f"changes{n}@example.org", password=CANARY)


def test_a_statement_format_insert_is_reported_with_its_outbox_id(moodle: MoodleDatabase) -> None:
    start = Checkpoint(moodle.server.binlog_end())
    admin = moodle.admin()
    with admin.cursor() as cursor:
        cursor.execute("SET SESSION binlog_format = 'STATEMENT'")
    userid, outbox_id = create_user_iomad(admin, user(1), moodle.prefix)
    admin.close()
    items = read(moodle, start)
    reported = [item for item in items if isinstance(item, Undecodable)]
    assert [(r.table, r.outbox_id, r.statement_format) for r in reported] == [
        (f"{moodle.prefix}user", None, True),
        (f"{moodle.prefix}email", outbox_id, True),
    ]
    assert not [item for item in items if isinstance(item, ChangeEvent)], "no row is guessed at"
    assert all("binlog_format=ROW" in r.problem and CANARY not in r.problem for r in reported)
    assert userid > 0


@pytest.mark.slow
def test_the_sidecar_counts_a_statement_format_row_and_leaves_it_to_moodle(
    moodle: MoodleDatabase, sqs_sink: SinkSettings
) -> None:
    settings = moodle.settings(sqs_sink, heartbeat=0.2, read_timeout=2.0)
    sidecar = Sidecar(settings).start()
    try:
        admin = moodle.admin()
        with admin.cursor() as cursor:
            cursor.execute("SET SESSION binlog_format = 'STATEMENT'")
        _, outbox_id = create_user_iomad(admin, user(2), moodle.prefix)
        admin.close()
        rows = wait_for(lambda: ledger(moodle, settings.state_schema).get(outbox_id), 30, "the ledger row")
        metric = sidecar.runtime.metrics.statement_format.labels("outbox")._value.get()
    finally:
        sidecar.stop()
    assert (rows["status"], rows["reason"]) == (Status.SKIPPED.value, "undecodable")
    assert metric == 1
    assert outbox_id in outbox_rows(moodle), "the row stays for Moodle to send"


def test_a_table_map_without_column_names_fails_closed_naming_the_fix(own_server: MariaDBSandbox) -> None:
    moodle = moodle_database(own_server, database="minimal")
    start = Checkpoint(own_server.binlog_end())
    root = own_server.connect()
    try:
        with root.cursor() as cursor:
            cursor.execute("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
        admin = moodle.admin()  # a new session: it logs under the new global setting
        create_user_iomad(admin, user(3), moodle.prefix)
        admin.close()
    finally:
        with root.cursor() as cursor:
            cursor.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
        root.close()
    with pytest.raises(SourceRefused) as refused:
        read(moodle, start)
    message = str(refused.value)
    assert "binlog_row_metadata = FULL" in message and "position set --now" in message


@pytest.mark.parametrize(("before", "after"), [("CRC32", "NONE"), ("NONE", "CRC32")])
def test_a_checkpoint_in_a_file_written_under_the_old_checksum_is_read(
    own_server: MariaDBSandbox, before: str, after: str
) -> None:
    moodle = moodle_database(own_server, database=f"checksum_{before.lower()}")
    root = own_server.connect()
    try:
        with root.cursor() as cursor:
            cursor.execute(f"SET GLOBAL binlog_checksum = '{before}'")  # rotates to a new file
            start = Checkpoint(own_server.binlog_end())
            admin = moodle.admin()
            ids = [create_user_iomad(admin, user(10 + n), moodle.prefix) for n in range(2)]
            cursor.execute(f"SET GLOBAL binlog_checksum = '{after}'")
            ids += [create_user_iomad(admin, user(20 + n), moodle.prefix) for n in range(2)]
            admin.close()
        items = read(moodle, start)
    finally:
        with root.cursor() as cursor:
            cursor.execute("SET GLOBAL binlog_checksum = 'CRC32'")
        root.close()
    rows = [item.row for item in items if isinstance(item, ChangeEvent)]
    assert sorted(r.id for r in rows if isinstance(r, UserRow)) == sorted(u for u, _ in ids)
    assert sorted(r.id for r in rows if isinstance(r, OutboxRow)) == sorted(o for _, o in ids)
    files = {item.checkpoint.position.file for item in items if isinstance(item, Commit)}
    assert len(files) == 2, "both files were read, each under its own setting"
