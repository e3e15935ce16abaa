"""MySQL 5.7 (and 5.6): servers that write no column names into their binlog.

The reader takes the names of the two watched tables from INFORMATION_SCHEMA and uses them only for
a table-map they match (column count, types, nullability). No MySQL 5.7 server can run here, so:
- recorded MySQL 5.6.41 bytes (tests/test_binlog_replay.py reads that file to its end, rows equal
  to the library's decode given the same names; here its table-map is paired with definitions that
  do not match);
- IOMAD users written by a real MariaDB with binlog_row_metadata=NO_LOG (table-maps exactly as 5.7
  writes them), re-framed as a 5.7 binlog (tests/support/mysql57_stream.py) and served with that
  server's real INFORMATION_SCHEMA rows by the local stand-in, to the real reader;
- a server that could write names but is set to MINIMAL is still refused (never this path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cdc_offload.demo.moodle import NewUser, create_user_iomad
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.model import ChangeEvent, Checkpoint, Commit, EventCounts, OutboxRow, Position, Undecodable, UserRow
from cdc_offload.sandbox import MariaDBSandbox, running_mariadb
from cdc_offload.settings import Dsn, SinkSettings
from cdc_offload.source.binlog import FastBinlogReader, tablemap
from cdc_offload.source.binlog.schema_names import SchemaColumn, disagreement, server_writes_no_names
from cdc_offload.source.binlog.tablemap import Column, TableMap
from cdc_offload.source.binlog.tables import Watched
from cdc_offload.source.server_facts import SourceRefused
from tests.conftest import CANARY
from tests.support.binlog_replay import COLUMNS_FIELDS, ColumnRow, ReplaySource, read_binlog_file
from tests.support.mysql57_stream import VERSION, convert
from tests.test_binlog_replay import DATA, comparable, library_items, settings_for, watch_every_table

T = TypeVar("T")
FILE_56 = "binlog_56_gtid_reserved_word.000001"
GENERATED = ("test", "GENERATED")
# `a int NOT NULL`, as the 5.6 server's INFORMATION_SCHEMA had it (the file's own DDL).
INT_A: ColumnRow = ("a", "int", "int(11)", "NO", None, "10", "0", None, None)
LEFT_TO_MOODLE = "left to Moodle"


# -- pure logic: which servers, which definitions ----------------------------------------------


@pytest.mark.parametrize(
    ("version", "row_metadata", "expected"),
    [
        ("5.7.44-log", None, True),
        ("5.6.41-debug-log", None, True),
        ("8.0.0-dmr", None, True),
        ("10.4.32-MariaDB-log", None, True),
        ("8.0.40", "MINIMAL", False),  # could write names: told to, never guessed for
        ("10.11.6-MariaDB", "NO_LOG", False),
        ("8.0.40", None, False),  # the variable hidden from us: not a server that cannot
        ("10.5.15-MariaDB", None, False),
    ],
)
def test_only_a_server_that_cannot_write_names_reads_them_from_information_schema(
    version: str, row_metadata: str | None, expected: bool
) -> None:
    assert server_writes_no_names(version, row_metadata) is expected


def _map(*columns: Column) -> TableMap:
    return TableMap(75, "moodle", "mdl_email", columns)


def _declared(name: str, data_type: str, column_type: str, nullable: bool, **more: Any) -> SchemaColumn:
    return SchemaColumn(name, data_type, column_type, nullable, **more)


def test_a_definition_matches_the_table_map_column_by_column() -> None:
    table = _map(
        Column(0, 8, False),  # BIGINT NOT NULL
        Column(1, 15, True, max_length=400),  # VARCHAR(100) utf8mb4
        Column(2, 252, True, length_size=4),  # LONGTEXT
        Column(3, 18, False, fsp=3),  # DATETIME(3)
    )
    now = [
        _declared("id", "bigint", "bigint(10)", False),
        _declared("templatename", "varchar", "varchar(100)", True, octet_length=400, charset="utf8mb4"),
        _declared("body", "longtext", "longtext", True, charset="utf8mb4"),
        _declared("due", "datetime", "datetime(3)", False, fsp=3),
    ]
    assert disagreement(table, now) is None
    assert "4 columns, INFORMATION_SCHEMA now 2" in str(disagreement(table, now[:2]))
    longer = [*now[:1], dataclasses.replace(now[1], octet_length=1020), *now[2:]]
    assert "column 2 is VARCHAR NULL in the binlog, `templatename` varchar(100) NULL" in str(
        disagreement(table, longer)
    )
    text = [*now[:2], dataclasses.replace(now[2], data_type="text", column_type="text"), now[3]]
    assert "column 3" in str(disagreement(table, text)), "TEXT has a 2-byte length, LONGTEXT 4"
    not_null = [*now[:2], dataclasses.replace(now[2], nullable=False), now[3]]
    assert "column 3" in str(disagreement(table, not_null))
    whole_seconds = [*now[:3], dataclasses.replace(now[3], fsp=0)]
    assert "column 4" in str(disagreement(table, whole_seconds))


# -- recorded MySQL 5.6 bytes, paired with definitions that do not match ------------------------


def replay_56(answers: list[list[ColumnRow]]) -> tuple[list[Any], ReplaySource]:
    recorded = read_binlog_file(DATA / FILE_56)
    with ReplaySource(recorded, columns={GENERATED: answers}) as source:
        reader = FastBinlogReader(
            settings_for(source), Checkpoint(Position(FILE_56, 4)), blocking=False, watched=watch_every_table(recorded)
        )
        try:
            items = [item for item in reader if not isinstance(item, EventCounts)]
        finally:
            reader.close()
    return items, source


@pytest.mark.parametrize(
    ("definition", "said"),
    [
        (
            [INT_A, ("b", "varchar", "varchar(20)", "YES", "80", None, None, None, "utf8mb4")],
            "INFORMATION_SCHEMA now 2",
        ),
        ([("a", "varchar", "varchar(20)", "NO", "80", None, None, None, "utf8mb4")], "`a` varchar(20) NOT NULL"),
        ([("a", "bigint", "bigint(20)", "NO", None, "19", "0", None, None)], "`a` bigint(20) NOT NULL"),
        ([("a", "int", "int(11)", "YES", None, "10", "0", None, None)], "`a` int(11) NULL"),
        ([], "GRANT SELECT ON test.GENERATED"),
    ],
    ids=["another-column-count", "another-type", "another-integer-width", "nullable-now", "not-visible"],
)
def test_a_definition_that_does_not_match_the_table_map_leaves_its_rows_to_moodle(
    definition: list[ColumnRow], said: str
) -> None:
    items, source = replay_56([definition])
    rows = [item for item in items if isinstance(item, ChangeEvent)]
    problems = [item for item in items if isinstance(item, Undecodable) and not item.statement_format]
    assert not rows, "no value is put under a name it may not have"
    assert len(problems) == 1
    assert said in problems[0].problem and LEFT_TO_MOODLE in problems[0].problem
    assert isinstance(items[-1], Commit) and items[-1].checkpoint.position.offset == 1399, "read to its end"
    # Read when the session started, and once more before giving up on the table-map.
    assert source.schema_queries == 2


def test_a_definition_read_before_an_alter_is_read_again_when_the_table_map_disagrees() -> None:
    # At the session's start the table has another column; by the time its table-map arrives,
    # it no longer has: the second look is the one that describes the rows.
    older = [INT_A, ("b", "int", "int(11)", "YES", None, "10", "0", None, None)]
    items, source = replay_56([older, [INT_A]])
    rows = [item.row for item in items if isinstance(item, ChangeEvent)]
    assert [row.values for row in rows] == [{"a": 65}]  # type: ignore[attr-defined]
    assert source.schema_queries == 2


def test_a_server_that_can_write_names_but_does_not_is_refused_even_with_a_definition_at_hand() -> None:
    name = "minimal_row_metadata.000001"
    recorded = read_binlog_file(DATA / name)
    watched = watch_every_table(recorded)
    definition: list[ColumnRow] = [("a", "int", "int(11)", "YES", None, "10", "0", None, None)]
    columns = {(watched.schema, watched.tables[0].table): [definition]}
    with ReplaySource(recorded, columns=columns, row_metadata="MINIMAL") as source:
        reader = FastBinlogReader(settings_for(source), Checkpoint(Position(name, 4)), blocking=False, watched=watched)
        with pytest.raises(SourceRefused) as refused:
            list(reader)
    assert "binlog_row_metadata = FULL" in str(refused.value) and "position set --now" in str(refused.value)
    assert source.schema_queries == 0, "INFORMATION_SCHEMA is never asked for a server that could write names"


# -- IOMAD users from a real server's NO_LOG table-maps, as a 5.7 binlog -------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[MariaDBSandbox]:
    # binlog_row_metadata is global: a server of its own.
    with running_mariadb() as sandbox:
        yield sandbox


def written_without_names(server: MariaDBSandbox, write: Callable[[], T]) -> tuple[Path, T]:
    """Runs `write` while the server logs no column metadata, in a binlog file of its own."""
    root = server.connect()
    try:
        with root.cursor() as cursor:
            cursor.execute("SET GLOBAL binlog_row_metadata = 'NO_LOG'")
            cursor.execute("FLUSH BINARY LOGS")
            file = server.binlog_end().file
            result = write()  # in sessions opened now: they log under the new setting
    finally:
        with root.cursor() as cursor:
            cursor.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
            cursor.execute("FLUSH BINARY LOGS")  # the file is complete
        root.close()
    return server.datadir / file, result


def information_schema(moodle: MoodleDatabase, table: str) -> list[ColumnRow]:
    admin = moodle.admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(COLUMNS_FIELDS)} FROM INFORMATION_SCHEMA.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (moodle.database, table),
            )
            return [tuple(None if v is None else str(v) for v in row) for row in cursor.fetchall()]
    finally:
        admin.close()


def users(moodle: MoodleDatabase, numbers: range, password: str = CANARY) -> list[tuple[int, int]]:
    admin = moodle.admin()
    try:
        return [
            create_user_iomad(admin, NewUser(f"five7_{n}", f"five7_{n}@example.org", password), moodle.prefix)
            for n in numbers
        ]
    finally:
        admin.close()


def alter_outbox(moodle: MoodleDatabase) -> None:
    # What a Moodle/IOMAD upgrade does to a table: a column added at the end.
    admin = moodle.admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {moodle.prefix}email ADD COLUMN priority BIGINT(10) DEFAULT NULL")
    finally:
        admin.close()


def read_as_57(path: Path, moodle: MoodleDatabase, answers: dict[str, list[list[ColumnRow]]]) -> list[Any]:
    """The 5.7-shaped copy, served with `answers` as INFORMATION_SCHEMA, read with the sidecar's
    own watched tables and row conversions."""
    recorded = read_binlog_file(path)
    assert recorded.server_version == VERSION
    columns = {(moodle.database, table): rows for table, rows in answers.items()}
    with ReplaySource(recorded, columns=columns) as source:
        settings = moodle.settings(SinkSettings(queue_url="unused"), read_timeout=10.0, server_id=4242)
        settings = dataclasses.replace(settings, source=Dsn("127.0.0.1", source.port, "replica", moodle.database))
        reader = FastBinlogReader(settings, Checkpoint(Position(path.name, 4)), blocking=False)
        try:
            return [item for item in reader if not isinstance(item, EventCounts)]
        finally:
            reader.close()


def test_iomad_rows_of_a_57_binlog_equal_the_librarys_decode_given_the_same_names(
    own_server: MariaDBSandbox, tmp_path: Path
) -> None:
    moodle = moodle_database(own_server, database="five7_rows")
    # Not the canary: this test compares whole rows, bodies included.
    source_file, created = written_without_names(own_server, lambda: users(moodle, range(3), "Not-a-secret-1"))
    path = convert(source_file, tmp_path / "mysql-bin.000001")
    recorded = read_binlog_file(path)
    maps = [tablemap.parse(e.raw[19:-4], 8, mariadb=False) for e in recorded.events if e.kind == 0x13]
    assert maps and not any(m.has_names for m in maps), "table-maps as 5.7 writes them: no names"
    tables = {f"{moodle.prefix}user", f"{moodle.prefix}email"}
    definitions = {table: information_schema(moodle, table) for table in tables}
    watched = watch_every_table(recorded)
    watched = Watched(watched.schema, [t for t in watched.tables if t.table in tables])
    columns = {(moodle.database, table): [rows] for table, rows in definitions.items()}
    with ReplaySource(recorded, columns=columns) as source:
        reader = FastBinlogReader(
            settings_for(source), Checkpoint(Position(path.name, 4)), blocking=False, watched=watched
        )
        items = [item for item in reader if not isinstance(item, EventCounts)]
    names = {table: [str(row[0]) for row in rows] for table, rows in definitions.items()}
    expected = [
        item
        for item in library_items(recorded, names)
        if not isinstance(item, ChangeEvent) or item.row.table in tables  # type: ignore[attr-defined]
    ]
    actual = comparable(items)
    assert len(actual) == len(expected) and actual == expected
    decoded = [item.row.values for item in items if isinstance(item, ChangeEvent)]  # type: ignore[attr-defined]
    assert sorted(v["id"] for v in decoded if "username" in v) == sorted(u for u, _ in created)
    assert sorted(v["id"] for v in decoded if "templatename" in v) == sorted(o for _, o in created)
    assert source.schema_queries == 2, "one look per table, at the session's start"


@pytest.mark.slow
def test_an_alter_between_the_rows_and_now_leaves_only_the_older_outbox_rows_to_moodle(
    own_server: MariaDBSandbox, tmp_path: Path
) -> None:
    moodle = moodle_database(own_server, database="five7_alter")

    def write() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        before = users(moodle, range(10, 12))
        alter_outbox(moodle)
        return before, users(moodle, range(12, 14))

    source_file, (before, after) = written_without_names(own_server, write)
    path = convert(source_file, tmp_path / "mysql-bin.000002")
    now = {table: [information_schema(moodle, table)] for table in (f"{moodle.prefix}user", f"{moodle.prefix}email")}
    items = read_as_57(path, moodle, now)

    rows = [item.row for item in items if isinstance(item, ChangeEvent)]
    assert sorted(r.id for r in rows if isinstance(r, UserRow)) == sorted(u for u, _ in before + after)
    assert sorted(r.id for r in rows if isinstance(r, OutboxRow)) == sorted(o for _, o in after)
    left = [item for item in items if isinstance(item, Undecodable)]
    assert [item.table for item in left] == [f"{moodle.prefix}email"] * len(before)
    assert all("does not match the table's definition now" in p.problem for p in left)
    assert all(LEFT_TO_MOODLE in p.problem and CANARY not in p.problem for p in left)
    assert isinstance(items[-1], Commit), "read to its end"


@pytest.mark.slow
def test_an_alter_while_the_reader_runs_is_followed_by_reading_the_definition_again(
    own_server: MariaDBSandbox, tmp_path: Path
) -> None:
    moodle = moodle_database(own_server, database="five7_follow")
    outbox = f"{moodle.prefix}email"
    holder: dict[str, list[ColumnRow]] = {}

    def write() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        before = users(moodle, range(20, 22))
        holder["before"] = information_schema(moodle, outbox)
        alter_outbox(moodle)
        return before, users(moodle, range(22, 24))

    source_file, (before, after) = written_without_names(own_server, write)
    path = convert(source_file, tmp_path / "mysql-bin.000003")
    # The session starts before the ALTER; its table-map (a new table id) arrives after it.
    answers = {f"{moodle.prefix}user": [information_schema(moodle, f"{moodle.prefix}user")]}
    answers[outbox] = [holder["before"], information_schema(moodle, outbox)]
    assert len(answers[outbox][1]) == len(answers[outbox][0]) + 1
    items = read_as_57(path, moodle, answers)

    rows = [item.row for item in items if isinstance(item, ChangeEvent)]
    assert sorted(r.id for r in rows if isinstance(r, OutboxRow)) == sorted(o for _, o in before + after)
    assert sorted(r.id for r in rows if isinstance(r, UserRow)) == sorted(u for u, _ in before + after)
    assert not [item for item in items if isinstance(item, Undecodable)]
