"""The binlog, as a stream of `SourceItem`s. The only module that knows the replication library.

Everything it yields is a frozen value: INSERTs on the two watched tables (`ChangeEvent`), the
transaction boundaries after them (`Commit`), and `Idle` when a heartbeat says the server has
nothing more. A reconnect is never done here: any error ends the iteration with `SourceError`,
and the pipeline rebuilds the reader from *its own* committed checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import WriteRowsEvent

from cdc_offload.errors import PositionLost, SourceError
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    Commit,
    EventCounts,
    Idle,
    OutboxRow,
    Position,
    SourceItem,
    Undecodable,
    UserRow,
)
from cdc_offload.rows import outbox_from_values, user_from_values
from cdc_offload.settings import Dsn, Settings, TableNames

# MariaDB's GTID flag for a transaction with no BEGIN/COMMIT (a DDL statement).
_MARIADB_GTID_STANDALONE = 0x01


_EVENT_TYPES: dict[type, str] = {
    WriteRowsEvent: "write_rows",
    XidEvent: "xid",
    QueryEvent: "query",
    RotateEvent: "rotate",
    GtidEvent: "gtid",
    MariadbGtidEvent: "gtid",
    HeartbeatLogEvent: "heartbeat",
}


class _NoSilentReconnect(BinLogStreamReader):  # type: ignore[misc]
    # The library reconnects on errors 2006/2013 and resumes from *its* position, which can be in
    # the middle of a transaction after a skipped table-map (rows silently lost). We refuse the
    # second connection so the caller rebuilds from a committed boundary instead.
    _connected_once = False

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._connected_once:
            raise SourceError("the binlog connection was lost")
        self._connected_once = True
        super()._BinLogStreamReader__connect_to_stream()


def connection_kwargs(dsn: Dsn, read_timeout: float | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": dsn.host,
        "port": dsn.port,
        "user": dsn.user,
        "password": dsn.password,
        "charset": "utf8mb4",
        "connect_timeout": 5,
    }
    if read_timeout is not None:
        kwargs["read_timeout"] = read_timeout
    return kwargs


def _binlog_status(cursor: Any) -> Any:
    try:
        cursor.execute("SHOW MASTER STATUS")
    except pymysql.err.ProgrammingError:
        # MySQL 8.4 removed SHOW MASTER STATUS.
        cursor.execute("SHOW BINARY LOG STATUS")
    return cursor.fetchone()


def current_end(dsn: Dsn) -> Checkpoint:
    """The server's end of binlog now: where a first run starts (never the oldest file)."""
    connection = pymysql.connect(**connection_kwargs(dsn))
    try:
        with connection.cursor() as cursor:
            row = _binlog_status(cursor)
            if row is None:
                raise SourceError("the binlog is off on the source server: start it with --log-bin")
            gtid = None
            cursor.execute("SELECT @@version")
            version_row = cursor.fetchone()
            if version_row is not None and "mariadb" in str(version_row[0]).lower():
                cursor.execute("SELECT @@gtid_binlog_pos")
                gtid_row = cursor.fetchone()
                gtid = str(gtid_row[0]) if gtid_row and gtid_row[0] else None
            return Checkpoint(Position(str(row[0]), int(row[1])), gtid=gtid)
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class _Watched:
    schema: str
    user_table: str
    outbox_table: str
    tables: TableNames


class BinlogSource:
    """Reads from a committed checkpoint onwards; stops on the first error (see module doc)."""

    def __init__(
        self, settings: Settings, start: Checkpoint, *, blocking: bool = True, end: Position | None = None
    ) -> None:
        self._settings = settings
        self._start = start
        self._end = end
        self._watched = _Watched(
            schema=settings.source.database,
            user_table=settings.tables.user_table,
            outbox_table=settings.tables.outbox_table,
            tables=settings.tables,
        )
        self._reader = _NoSilentReconnect(
            connection_settings=connection_kwargs(settings.source, settings.read_timeout),
            server_id=settings.server_id,
            resume_stream=True,
            blocking=blocking,
            log_file=start.position.file,
            log_pos=start.position.offset,
            end_log_pos=None,
            only_events=[
                WriteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                GtidEvent,
                MariadbGtidEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self._watched.schema],
            only_tables=[self._watched.user_table, self._watched.outbox_table],
            slave_heartbeat=settings.heartbeat if blocking else None,
            is_mariadb=False,
            enable_logging=False,
        )

    def close(self) -> None:
        self._reader.close()

    def __iter__(self) -> Iterator[SourceItem]:
        try:
            yield from self._items()
        except SourceError:
            raise
        except pymysql.err.OperationalError as error:
            code = error.args[0] if error.args else 0
            if code == 1236:
                raise PositionLost(
                    f"the server cannot resume at {self._start.position} (MySQL error 1236); "
                    "the binlog holding it was purged or this is another server. Rows since then are Moodle's to send; "
                    "pick a new start with `cdc-offload position set --now`"
                ) from None
            raise SourceError(f"binlog read failed: MySQL error {code}") from None
        except (OSError, pymysql.err.Error) as error:
            raise SourceError(f"binlog read failed: {type(error).__name__}") from None

    def _items(self) -> Iterator[SourceItem]:
        reader = self._reader
        boundary = self._start
        gtids = _GtidState.parse(self._start.gtid)
        in_transaction = False
        watched = self._watched
        counts: dict[str, int] = {}
        seen = 0
        reported_at = time.monotonic()
        while True:
            event = reader.fetchone()
            if event is None:
                if counts:
                    yield EventCounts(tuple(counts.items()))
                return
            kind = _EVENT_TYPES.get(type(event), "other")
            counts[kind] = counts.get(kind, 0) + 1
            seen += 1
            if seen % 1000 == 0 or (kind in ("heartbeat", "xid") and time.monotonic() - reported_at > 0.25):
                yield EventCounts(tuple(counts.items()))
                counts = {}
                reported_at = time.monotonic()
            if isinstance(event, WriteRowsEvent):
                if event.schema != watched.schema:
                    continue
                yield from self._rows(event, boundary)
            elif isinstance(event, XidEvent):
                in_transaction = False
                boundary = Checkpoint(Position(reader.log_file, reader.log_pos), gtids.render())
                yield Commit(boundary, event.timestamp)
            elif isinstance(event, QueryEvent):
                query = event.query.strip().upper() if isinstance(event.query, str) else ""
                if query == "BEGIN":
                    in_transaction = True
                elif query == "COMMIT" or not in_transaction:
                    in_transaction = False
                    boundary = Checkpoint(Position(reader.log_file, reader.log_pos), gtids.render())
                    yield Commit(boundary, event.timestamp)
            elif isinstance(event, MariadbGtidEvent):
                gtids.note(event.domain_id, event.gtid)
                in_transaction = not (event.flags & _MARIADB_GTID_STANDALONE)
            elif isinstance(event, RotateEvent):
                if not in_transaction:
                    boundary = Checkpoint(Position(event.next_binlog, event.position), gtids.render())
            elif isinstance(event, HeartbeatLogEvent):
                yield Idle(time.time())
            if self._end is not None and not in_transaction and boundary.position >= self._end:
                return

    def _rows(self, event: WriteRowsEvent, boundary: Checkpoint) -> Iterator[SourceItem]:
        table = event.table
        watched = self._watched
        if table not in (watched.user_table, watched.outbox_table):
            return
        try:
            rows = event.rows
        except Exception as error:  # noqa: BLE001 - any decoder failure leaves the rows to Moodle
            yield Undecodable(table, boundary, event.timestamp, f"row decoding failed: {type(error).__name__}")
            return
        for row in rows:
            values = row["values"]
            if any(name.startswith("UNKNOWN_COL") for name in values):
                raise SourceError(
                    "the binlog has no column names for this table: set binlog_row_metadata=FULL on the source server"
                )
            try:
                parsed: UserRow | OutboxRow = (
                    user_from_values(values)
                    if table == watched.user_table
                    else outbox_from_values(values, watched.tables)
                )
            except ValueError as error:
                yield Undecodable(table, boundary, event.timestamp, str(error))
                continue
            yield ChangeEvent(parsed, boundary, event.timestamp)


class _GtidState:
    """The last GTID seen per replication domain (MariaDB's `gtid_binlog_pos` form)."""

    def __init__(self, per_domain: dict[int, str]) -> None:
        self._per_domain = per_domain

    @classmethod
    def parse(cls, text: str | None) -> _GtidState:
        per_domain: dict[int, str] = {}
        for raw in (text or "").split(","):
            part = raw.strip()
            if part.count("-") == 2 and part.split("-")[0].isdigit():
                per_domain[int(part.split("-")[0])] = part
        return cls(per_domain)

    def note(self, domain: int, gtid: str) -> None:
        self._per_domain[domain] = gtid

    def render(self) -> str | None:
        return ",".join(self._per_domain[d] for d in sorted(self._per_domain)) or None
