"""The fast reader over binlogs real MySQL (5.6, 8.0, 9.0, 9.6) and MariaDB 10.5 servers wrote.

No MySQL server can run here, so each recorded file (tests/data/mysql-binlogs, provenance in its
README) is served by a local replication source (tests/support/binlog_replay.py) and read by the
real `FastBinlogReader`: handshake, queries, dump request, socket framing, checksums, table-map
cache, transaction boundaries, GTIDs. What it yields is compared with an independent decode of the
same bytes: python-mysql-replication's own event classes (rows, boundaries, GTID sets) and, where
it can decode, `mariadb-binlog --base64-output=decode-rows -vv`. Files the reader must refuse are
refused with the sentence that names the fix.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymysql.protocol import MysqlPacket
from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent
from pymysqlreplication.gtid import Gtid, GtidSet
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

from cdc_offload.errors import SourceError
from cdc_offload.model import ChangeEvent, Checkpoint, Commit, EventCounts, Position, Undecodable
from cdc_offload.settings import Dsn, Settings, SinkSettings
from cdc_offload.source.binlog import FastBinlogReader
from cdc_offload.source.binlog.protocol import dump_request
from cdc_offload.source.binlog.tables import Watched, WatchedTable
from cdc_offload.source.gtid import MysqlGtidSet
from cdc_offload.source.server_facts import SourceRefused
from tests.support.binlog_replay import ColumnRow, RecordedFile, ReplaySource, read_binlog_file

DATA = Path(__file__).parent / "data" / "mysql-binlogs"
FILES = sorted(p.name for p in DATA.iterdir() if p.name not in ("README.md", "LICENSE-MIT.rust_mysql_common"))

# Files the reader must refuse, and what the refusal must say (the fix is in the same sentence).
NO_NAMES = "binlog_row_metadata = FULL"
REFUSED = {
    "json.binlog.000001": NO_NAMES,
    "minimal_row_metadata.000001": NO_NAMES,
    "rpl_unfiltered_hidden_gcol.000001": NO_NAMES,
    "time_issue.000001": NO_NAMES,
    "transaction_compression.000001": "binlog_transaction_compression OFF",
    "binlog_transaction_with_GTID_TAG.000001": "Stop tagging transactions",
}
# Read to the end; their rows equal the library's (and mariadb-binlog's where it can decode).
READ = sorted(set(FILES) - set(REFUSED))
MARIADB_BINLOG_DECODES = {
    "binlog_56_gtid_reserved_word.000001",
    "binlog-invisible-columns.000001",
    "mysql-enum-string-set.000001",
    "mysql_type_bit.000001",
    "mariadb-bin.000001",
}
# Servers that write no column names (MySQL 5.6/5.7): what their INFORMATION_SCHEMA.COLUMNS said,
# taken from the DDL in the file itself (`CREATE TABLE t1 (a int PRIMARY KEY)`, then
# `CREATE TABLE GENERATED LIKE test.t1`), in the stand-in's COLUMNS_FIELDS order.
SCHEMAS: dict[str, dict[tuple[str, str], list[list[ColumnRow]]]] = {
    "binlog_56_gtid_reserved_word.000001": {
        ("test", "GENERATED"): [[("a", "int", "int(11)", "NO", None, "10", "0", None, None)]],
    },
}
MYSQL_GTID_FILES = ("binlog-invisible-columns.000001", "mysql-enum-string-set.000001", "mysql_type_bit.000001")
VECTOR = 242  # MySQL 9.0's VECTOR column type: neither this reader nor the library knows it
KNOWN_TYPES = frozenset({*range(0, 20), 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255})


@dataclass(frozen=True)
class Row:
    """A decoded row as the test's watched tables give it: the table and its values."""

    table: str
    values: dict[str, Any]


def _tables(recorded: RecordedFile) -> dict[str, str]:
    """table -> schema, for every table-map in the file."""
    found: dict[str, str] = {}
    for event in recorded.events:
        if event.kind == 0x13:
            body = event.raw[19 + 8 :]
            schema = body[1 : 1 + body[0]].decode()
            at = 2 + body[0]
            found[body[at + 1 : at + 1 + body[at]].decode()] = schema
    return found


def watch_every_table(recorded: RecordedFile) -> Watched:
    tables = _tables(recorded)
    assert len(set(tables.values())) <= 1, "one schema per file"
    schema = next(iter(tables.values()), "none")

    def keep(table: str) -> Any:
        def convert(values: Mapping[str, object]) -> Row:
            return Row(table, dict(values))

        return convert

    return Watched(schema, [WatchedTable(table, None, keep(table)) for table in tables])


def settings_for(source: ReplaySource, **overrides: Any) -> Settings:
    dsn = Dsn("127.0.0.1", source.port, "replica", "unused")
    options: dict[str, Any] = {"server_id": 4242, "read_timeout": 10.0, "sink": SinkSettings(queue_url="http://unused")}
    options.update(overrides)
    return Settings(source=dsn, writer=dsn, **options)


def replay(name: str, start: Checkpoint | None = None, **overrides: Any) -> tuple[list[Any], ReplaySource]:
    recorded = read_binlog_file(DATA / name)
    with ReplaySource(recorded, columns=SCHEMAS.get(name, {})) as source:
        reader = FastBinlogReader(
            settings_for(source, **overrides),
            start or Checkpoint(Position(name, 4)),
            blocking=False,
            watched=watch_every_table(recorded),
        )
        try:
            items = [item for item in reader if not isinstance(item, EventCounts)]
        finally:
            reader.close()
    return items, source


# -- the independent decode: python-mysql-replication's event classes over the same bytes --------


class _Control:
    charset = "utf8mb4"

    def __init__(self, mariadb: bool) -> None:
        self._dbms = "mariadb" if mariadb else "mysql"

    def _get_dbms(self) -> str:
        return self._dbms


def library_items(recorded: RecordedFile, names: Mapping[str, Sequence[str]] | None = None) -> list[Any]:
    """What the reader must yield, as the library decodes the file: rows of every table (or an
    Undecodable where the library cannot decode them), and a Commit at each boundary with the GTID
    state the library's GtidSet (MySQL) or GTID events (MariaDB) give there. `names`: table ->
    column names, for the table-maps of a server that writes none (the library's own names for
    them are UNKNOWN_COL0..n)."""
    if names is None:
        names = {
            table: [row[0] for row in answers[-1]]
            for (_, table), answers in SCHEMAS.get(recorded.path.name, {}).items()
        }
    fde = recorded.events[0].raw
    post_header = tuple(fde[19 + 57 : -5])
    version = tuple(int(p) for p in recorded.server_version.split("-")[0].split("."))
    allowed = frozenset({TableMapEvent, WriteRowsEvent, XidEvent, QueryEvent, GtidEvent, MariadbGtidEvent})
    table_map: dict[int, Any] = {}
    unreadable: dict[int, str] = {}
    name = recorded.path.name
    mysql_gtids = GtidSet(None)
    mariadb_gtids: dict[int, str] = {}

    def state() -> str | None:
        if recorded.mariadb:
            return ",".join(mariadb_gtids[d] for d in sorted(mariadb_gtids)) or None
        return str(mysql_gtids) or None

    boundary = Checkpoint(Position(name, 4), None, "1")
    in_transaction = False
    expected: list[Any] = []
    for raw in recorded.events[1:]:
        if raw.kind == 0x13 and any(t not in KNOWN_TYPES for t in _column_types(raw.raw)):
            unreadable[int.from_bytes(raw.raw[19:25], "little")] = "unknown column type"
            continue
        event = BinLogPacketWrapper(
            MysqlPacket(b"\x00" + raw.raw, "utf8"),
            table_map,
            _Control(recorded.mariadb),
            version,
            recorded.checksum,
            allowed,
            None,
            None,
            None,
            None,
            False,
            False,
            False,
            True,
            False,
            False,
            post_header,
        ).event
        if isinstance(event, TableMapEvent):
            table = table_map[event.table_id] = event.get_table()
            given = names.get(event.table)
            if given is not None and len(given) == len(table.columns):
                for column, column_name in zip(table.columns, given, strict=True):
                    column.name = column_name
        elif raw.kind in (0x17, 0x1E):
            table_id = int.from_bytes(raw.raw[19:25], "little")
            timestamp = int.from_bytes(raw.raw[0:4], "little")
            table = _tables_by_id(recorded).get(table_id, "?")
            if table_id in unreadable:
                expected.append(("undecodable", table, boundary, timestamp))
                continue
            try:
                rows = [dict(row["values"]) for row in event.rows]  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - the library cannot decode it: the reader must say so
                expected.append(("undecodable", table, boundary, timestamp))
                continue
            expected += [ChangeEvent(Row(table, values), boundary, timestamp) for values in rows]  # type: ignore[arg-type]
        elif isinstance(event, MariadbGtidEvent):
            mariadb_gtids[event.domain_id] = event.gtid
            in_transaction = not event.flags & 0x01
        elif isinstance(event, GtidEvent):
            mysql_gtids.merge_gtid(Gtid(event.gtid))
        elif isinstance(event, XidEvent | QueryEvent):
            query = event.query.strip().upper() if isinstance(event, QueryEvent) else "COMMIT"
            statement = _STATEMENT_INSERT.match(query)
            if statement and statement.group(1) in {t.upper() for t in _tables_by_id(recorded).values()}:
                # A statement-format INSERT on a watched table: its rows are not in the binlog.
                table = next(t for t in _tables_by_id(recorded).values() if t.upper() == statement.group(1))
                expected.append(("undecodable", table, boundary, event.timestamp))
            if query == "BEGIN":
                in_transaction = True
            elif query == "COMMIT" or not in_transaction:
                in_transaction = False
                boundary = Checkpoint(Position(name, event.packet.log_pos), state(), "1")
                expected.append(Commit(boundary, event.timestamp))
    return expected


_STATEMENT_INSERT = re.compile(r"INSERT\s+INTO\s+`?(\w+)`?")


def _tables_by_id(recorded: RecordedFile) -> dict[int, str]:
    found = {}
    for event in recorded.events:
        if event.kind == 0x13:
            body = event.raw[19 + 8 :]
            at = 2 + body[0]
            found[int.from_bytes(event.raw[19:25], "little")] = body[at + 1 : at + 1 + body[at]].decode()
    return found


def _column_types(raw: bytes) -> bytes:
    body = raw[19 + 8 :]
    at = 2 + body[0]
    at += 2 + body[at]
    count = body[at]  # fewer than 251 columns in these files
    return body[at + 1 : at + 1 + count]


def comparable(items: list[Any]) -> list[Any]:
    """The reader's items in the form `library_items` gives them."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, Undecodable):
            out.append(("undecodable", item.table, item.start, item.event_time))
        else:
            out.append(item)
    return out


# -- mariadb-binlog, where it can decode --------------------------------------------------------

_ROW = re.compile(r"^### INSERT INTO `([^`]*)`\.`([^`]*)`$")
_VALUE = re.compile(r"^###   @(\d+)=(.*) /\* (\S+).* \*/$")
# Column types whose values mariadb-binlog prints as this reader's values would be printed (ENUM
# and SET print as numbers and bitmaps, BIT as b'...', times in the server's zone: not compared).
_PLAIN_TYPES = ("TINYINT", "SHORTINT", "MEDIUMINT", "INT", "LONGINT", "STRING", "VARSTRING", "BLOB/TEXT")


def mariadb_binlog_inserts(path: Path) -> list[tuple[str, list[str]]]:
    tool = shutil.which("mariadb-binlog")
    if tool is None:
        pytest.skip("mariadb-binlog is not installed (apt-get install mariadb-client)")
    text = subprocess.run(
        [tool, "--base64-output=decode-rows", "-vv", str(path)], capture_output=True, text=True, check=False
    ).stdout
    rows: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if found := _ROW.match(line):
            current = []
            rows.append((found.group(2), current))
        elif line.startswith("### ") and not line.startswith("###   ") and line != "### SET":
            current = None
        elif current is not None and (found := _VALUE.match(line)):
            plain = found.group(2) == "NULL" or found.group(3).split("(")[0] in _PLAIN_TYPES
            current.append(found.group(2) if plain else "")
    return rows


def rendered_like_mariadb_binlog(value: object) -> str | None:
    """How mariadb-binlog prints `value`, for the kinds whose printing is unambiguous."""
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.isprintable() and "'" not in value and "\\" not in value:
        return f"'{value}'"
    return None


# -- the tests ------------------------------------------------------------------------------------


def test_every_fixture_file_is_covered() -> None:
    assert len(FILES) == 13
    assert set(READ) | set(REFUSED) == set(FILES)


@pytest.mark.parametrize("name", READ)
def test_rows_and_boundaries_equal_the_librarys_decode_of_the_same_bytes(name: str) -> None:
    items, source = replay(name)
    expected = library_items(read_binlog_file(DATA / name))
    actual = comparable(items)
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    assert len(actual) == len(expected)
    assert any(isinstance(item, Commit) for item in items)
    assert source.commands[-1][0] == 0x12, "a COM_BINLOG_DUMP by position"


@pytest.mark.parametrize("name", sorted(MARIADB_BINLOG_DECODES))
def test_rows_equal_mariadb_binlogs_decode(name: str) -> None:
    items, _ = replay(name)
    ours = [item.row for item in items if isinstance(item, ChangeEvent)]
    theirs = mariadb_binlog_inserts(DATA / name)
    assert [row.table for row in ours] == [table for table, _ in theirs]
    compared = 0
    for row, (_, texts) in zip(ours, theirs, strict=True):
        assert len(row.values) == len(texts)
        for value, text in zip(row.values.values(), texts, strict=True):
            rendered = rendered_like_mariadb_binlog(value)
            if rendered is not None and text:
                # An integer with its top bit set shows both ways, "-3 (4294967293)": signed first,
                # unsigned in brackets; the column's signedness says which one the value is.
                assert rendered in (text, text.split(" (")[0], text.split(" (")[-1].rstrip(")")), (value, text)
                compared += 1
    assert compared >= 1, "some values were compared"


def test_a_mysql_9_binlog_is_read_to_its_end() -> None:
    # MySQL 9.0 (like 8.4) writes 0 as the post-header length of the v1 rows events it never
    # writes; the reader used to refuse the file at its FORMAT_DESCRIPTION.
    recorded = read_binlog_file(DATA / "json-opaque.binlog")
    assert recorded.events[0].raw[19 + 57 + 0x17 - 1] == 0, "the file has the 0 that used to be refused"
    items, _ = replay("json-opaque.binlog")
    rows = [item for item in items if isinstance(item, ChangeEvent)]
    assert len(rows) == 7
    last = [item for item in items if isinstance(item, Commit)][-1]
    assert last.checkpoint.position.offset == recorded.events[-1].offset + len(recorded.events[-1].raw)


def test_the_mysql_9_vector_table_is_left_to_moodle_and_the_stream_goes_on() -> None:
    items, _ = replay("vector.binlog")
    problems = [item for item in items if isinstance(item, Undecodable)]
    assert problems and all("type 242" in p.problem and "left to Moodle" in p.problem for p in problems)
    assert isinstance(items[-1], Commit), "read to the end"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_files_it_cannot_read_correctly_are_refused_naming_the_fix(name: str) -> None:
    with pytest.raises(SourceRefused) as refused:
        replay(name)
    message = str(refused.value)
    assert REFUSED[name] in message
    assert "position set --now" in message, "what to do after fixing the server"
    assert isinstance(refused.value, SourceError)


@pytest.mark.parametrize("name", MYSQL_GTID_FILES)
def test_gtid_state_at_each_commit_equals_the_librarys(name: str) -> None:
    items, _ = replay(name)
    expected = [item for item in library_items(read_binlog_file(DATA / name)) if isinstance(item, Commit)]
    commits = [item for item in items if isinstance(item, Commit)]
    assert [c.checkpoint for c in commits] == [c.checkpoint for c in expected]
    assert commits[-1].checkpoint.gtid and ":" in commits[-1].checkpoint.gtid


def test_mysql_gtid_resume_sends_com_binlog_dump_gtid_and_continues_the_set() -> None:
    name = "mysql-enum-string-set.000001"
    full = [item for item in replay(name)[0] if isinstance(item, Commit)]
    executed = full[0].checkpoint.gtid
    assert executed
    start = Checkpoint(Position("", 0), executed, None)
    items, source = replay(name, start, resume="gtid")
    request = source.commands[-1]
    expected = dump_request(
        server_id=4242, file="", offset=4, blocking=False, mysql_gtids=MysqlGtidSet(executed).encode()
    )
    assert request == expected[4:], "the dump request, byte for byte"
    commits = [item for item in items if isinstance(item, Commit)]
    assert commits[-1].checkpoint.gtid == full[-1].checkpoint.gtid


def test_a_binlog_older_than_mysql_5_6_is_refused(tmp_path: Path) -> None:
    # The 5.6 file with its FORMAT_DESCRIPTION saying 5.5.62 (checksum recomputed): the format
    # before 5.6 (no checksums, older rows events) is refused at its first event.
    original = (DATA / "binlog_56_gtid_reserved_word.000001").read_bytes()
    size = int.from_bytes(original[4 + 9 : 4 + 13], "little")
    fde = bytearray(original[4 : 4 + size])
    fde[19 + 2 : 19 + 52] = b"5.5.62-log".ljust(50, b"\0")
    fde[-4:] = zlib.crc32(bytes(fde[:-4])).to_bytes(4, "little")
    older = tmp_path / "mysql-bin.000001"
    older.write_bytes(original[:4] + bytes(fde) + original[4 + size :])
    recorded = read_binlog_file(older)
    with ReplaySource(recorded) as source:
        reader = FastBinlogReader(settings_for(source), Checkpoint(Position(older.name, 4)), blocking=False)
        with pytest.raises(SourceRefused, match=r"server of version 5\.5\.62-log") as refused:
            list(reader)
    assert "MySQL 5.6 and 5.7 (column names from INFORMATION_SCHEMA" in str(refused.value)


# -- caching_sha2_password, MySQL 8's default: what no recorded file can show ----------------------


def test_caching_sha2_password_over_plaintext_authenticates_by_the_rsa_key_exchange() -> None:
    name = "mysql_type_bit.000001"
    recorded = read_binlog_file(DATA / name)
    with ReplaySource(recorded, password="r3plica!pw") as source:
        settings = settings_for(source)
        dsn = dataclasses.replace(settings.source, password="r3plica!pw")
        reader = FastBinlogReader(
            dataclasses.replace(settings, source=dsn),
            Checkpoint(Position(name, 4)),
            blocking=False,
            watched=watch_every_table(recorded),
        )
        rows = [item for item in reader if isinstance(item, ChangeEvent)]
        assert source.authentications == ["rsa"] and len(rows) == 1
        wrong = FastBinlogReader(settings, Checkpoint(Position(name, 4)), blocking=False)
        with pytest.raises(SourceError, match="MySQL error 1045") as refused:
            list(wrong)
        assert "r3plica" not in str(refused.value)


def test_caching_sha2_password_over_verified_tls_sends_the_password_inside_tls(tmp_path: Path) -> None:
    from cdc_offload.settings import TlsSettings
    from tests.tls import make_pki

    pki = make_pki(tmp_path)
    name = "mysql_type_bit.000001"
    recorded = read_binlog_file(DATA / name)
    with ReplaySource(recorded, password="r3plica!pw", tls=(pki.server_cert, pki.server_key)) as source:
        settings = settings_for(source)
        dsn = dataclasses.replace(settings.source, password="r3plica!pw", tls=TlsSettings(ca=str(pki.ca), require=True))
        reader = FastBinlogReader(
            dataclasses.replace(settings, source=dsn),
            Checkpoint(Position(name, 4)),
            blocking=False,
            watched=watch_every_table(recorded),
        )
        rows = [item for item in reader if isinstance(item, ChangeEvent)]
    assert source.authentications == ["tls"] and len(rows) == 1, "the dump itself ran over the TLS socket"
