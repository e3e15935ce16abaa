"""The binlog, as a stream of `SourceItem`s: `open_source` (the fast reader the sidecar runs) and
`BinlogSource`, python-mysql-replication's reader, kept as the independent oracle the tests compare
the fast reader with. The only module that knows the replication library's stream reader.

Everything it yields is a frozen value: INSERTs on the two watched tables (`ChangeEvent`), the
transaction boundaries after them (`Commit`), and `Idle` when a heartbeat says the server has
nothing more. A reconnect is never done here: any error ends the iteration with `SourceError`,
and the pipeline rebuilds the reader from *its own* committed checkpoint. Boundaries, GTID state
and that error mapping are `framer.TransactionFramer`'s, the same as the fast reader's.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import WriteRowsEvent

from cdc_offload import tls
from cdc_offload.errors import SourceError
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    EventCounts,
    Idle,
    OutboxRow,
    Position,
    SourceItem,
    Undecodable,
    UserRow,
)
from cdc_offload.mysql_connection import connection_kwargs
from cdc_offload.rows import outbox_from_values, user_from_values
from cdc_offload.settings import Dsn, Settings, TableNames
from cdc_offload.source.binlog import FastBinlogReader
from cdc_offload.source.binlog.constants import (
    COM_BINLOG_DUMP,
    GTID_STANDALONE,
    MARIADB_COMPRESSED,
    TRANSACTION_PAYLOAD,
)
from cdc_offload.source.framer import TransactionFramer, reading
from cdc_offload.source.server_facts import (
    COMPRESSED,
    ServerFacts,
    SourceRefused,
    server_facts,
)

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

    def _BinLogStreamReader__set_mariadb_settings(self) -> bytes:
        # mysql-replication 1.0.17 (pinned) declares this COM_BINLOG_DUMP one byte shorter than it
        # sends; MariaDB then reads the stray byte as the next packet and resets the dump after a
        # few hundred KB. Same session variables and bytes as the library, the length computed
        # from the payload actually sent.
        with self._stream_connection.cursor() as cursor:
            if self.auto_position is not None:
                cursor.execute("SET @slave_connect_state = %s", (self.auto_position,))
            cursor.execute("SET @slave_gtid_strict_mode=1")
            cursor.execute("SET @slave_gtid_ignore_duplicates=0")
        flags = 0x01 if not self._BinLogStreamReader__blocking else 0  # BINLOG_DUMP_NON_BLOCK
        payload = (
            bytes([COM_BINLOG_DUMP])
            + struct.pack("<I", 4)  # binlog position: unused with a GTID start
            + struct.pack("<H", flags)
            + struct.pack("<I", self._BinLogStreamReader__server_id)
            + b"\0\0\0\0"  # binlog file name: none (the GTID state says where)
        )
        # A packet header is 3 bytes of payload length and 1 byte of sequence id (0).
        return struct.pack("<I", len(payload)) + payload


# Compressed events have no handler in the library and would be dropped without a word:
# MariaDB's log_bin_compress (QUERY_COMPRESSED .. DELETE_ROWS_COMPRESSED) and MySQL's
# binlog_transaction_compression (TRANSACTION_PAYLOAD).
_COMPRESSED_EVENT_TYPES = frozenset({*MARIADB_COMPRESSED, TRANSACTION_PAYLOAD})


def _tls_checked(dsn: Dsn) -> Any:
    """The replication library's connection factory: every control and dump connection it opens
    gets clear TLS errors and, when TLS is on, is verified to be encrypted before use."""

    def open_connection(**kwargs: Any) -> Any:
        return tls.connect(dsn, kwargs)

    return open_connection


@dataclass(frozen=True, slots=True)
class _Watched:
    schema: str
    user_table: str
    outbox_table: str
    tables: TableNames


def open_source(
    settings: Settings,
    start: Checkpoint,
    *,
    blocking: bool = True,
    end: Position | None = None,
    on_wait: Callable[[], None] | None = None,
) -> FastBinlogReader:
    """The reader the pipeline uses: the header-only one, for MariaDB and MySQL, by position or by
    GTID (tens of times faster than `BinlogSource`, equal output: tests/test_binlog_differential.py
    and tests/test_binlog_replay.py). `BinlogSource` stays as the independent oracle of those tests."""
    return FastBinlogReader(settings, start, blocking=blocking, end=end, on_wait=on_wait)


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
        self._blocking = blocking
        self._closed = False
        self._reader: _NoSilentReconnect | None = None
        self._facts: ServerFacts | None = None

    def _open(self, facts: ServerFacts) -> _NoSilentReconnect:
        """The library's reader, by GTID when asked and the checkpoint has one, else by file/offset
        (with MariaDB, `is_mariadb` only with a GTID: it ignores file/offset otherwise)."""
        settings, start, blocking = self._settings, self._start, self._blocking
        by_gtid = settings.resume == "gtid" and bool(start.gtid)
        return _NoSilentReconnect(
            connection_settings=connection_kwargs(settings.source, settings.read_timeout),
            server_id=settings.server_id,
            resume_stream=True,
            blocking=blocking,
            log_file=start.position.file,
            log_pos=start.position.offset,
            auto_position=start.gtid if by_gtid else None,
            end_log_pos=None,
            only_events=[
                WriteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                GtidEvent,
                MariadbGtidEvent,
                HeartbeatLogEvent,
                NotImplementedEvent,
            ],
            only_schemas=[self._watched.schema],
            only_tables=[self._watched.user_table, self._watched.outbox_table],
            slave_heartbeat=settings.heartbeat if blocking else None,
            is_mariadb=facts.mariadb and by_gtid,
            # Unknown event types come through (as NotImplementedEvent) so a compressed one is seen.
            filter_non_implemented_events=False,
            enable_logging=False,
            pymysql_wrapper=_tls_checked(settings.source),
        )

    def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.close()

    def __iter__(self) -> Iterator[SourceItem]:
        yield from reading(self._items(), self._settings, self._start)

    def _items(self) -> Iterator[SourceItem]:
        facts = server_facts(self._settings, self._start)
        if self._closed:
            return
        reader = self._reader = self._open(facts)
        framer = TransactionFramer(self._start, mariadb=facts.mariadb, server_id=facts.server_id)
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
            yield from self._handle(event, framer, reader)
            if self._end is not None and framer.past(self._end):
                return

    def _handle(self, event: Any, framer: TransactionFramer, reader: Any) -> Iterator[SourceItem]:
        """What one library event means for the loop (most mean nothing; the framer keeps track)."""
        if isinstance(event, WriteRowsEvent):
            if event.schema == self._watched.schema:
                yield from self._rows(event, framer.boundary)
        elif isinstance(event, XidEvent):
            yield framer.commit(reader.log_file, reader.log_pos, event.timestamp)
        elif isinstance(event, QueryEvent):
            query = event.query.strip().upper() if isinstance(event.query, str) else ""
            committed = framer.query(
                begin=query == "BEGIN",
                commit=query == "COMMIT",
                file=reader.log_file,
                offset=reader.log_pos,
                timestamp=event.timestamp,
            )
            if committed is not None:
                yield committed
        elif isinstance(event, HeartbeatLogEvent):
            yield Idle(time.time())
        else:
            _track(event, framer, reader)

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
                yield Undecodable(
                    table,
                    boundary,
                    event.timestamp,
                    str(error),
                    getattr(error, "outbox_id", None),
                    getattr(error, "userid", None),
                )
                continue
            yield ChangeEvent(parsed, boundary, event.timestamp)


def _track(event: Any, framer: TransactionFramer, reader: Any) -> None:
    """Events that only move the framer's GTID or file, or that refuse the stream."""
    if isinstance(event, MariadbGtidEvent):
        framer.mariadb_gtid(event.domain_id, event.gtid, bool(event.flags & GTID_STANDALONE))
    elif isinstance(event, GtidEvent):
        framer.mysql_gtid(event.sid, event.gno)
    elif isinstance(event, RotateEvent):
        framer.rotate(event.next_binlog, event.position)
    elif isinstance(event, NotImplementedEvent) and event.event_type in _COMPRESSED_EVENT_TYPES:
        raise SourceRefused(
            f"a compressed binlog event (type {event.event_type}) at {reader.log_file}:{reader.log_pos}: " + COMPRESSED
        )
