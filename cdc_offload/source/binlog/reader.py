"""`FastBinlogReader`: the binlog as `SourceItem`s, item for item what `cdc_offload.source.library_reader.
BinlogSource` yields, at header-only speed.

Most events of a busy Moodle binlog are rows events and table-maps of tables we do not watch.
For those only the type byte, the table id and (for a table-map) the name bytes are looked at;
UPDATE and DELETE rows events are skipped by type whatever their table. Only the INSERTs of the
two watched tables are decoded, by a generated decoder cached per table shape (see `decoders`).

Transaction boundaries, GTID state and the error mapping are `TransactionFramer`'s (shared with
`BinlogSource`); `Idle` on heartbeats and `Undecodable` follow `BinlogSource` exactly; where the
two differ it says so at the spot.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator

from cdc_offload.errors import SourceError
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    EventCounts,
    Idle,
    OutboxUpdate,
    Position,
    SourceItem,
    Undecodable,
)
from cdc_offload.settings import Settings
from cdc_offload.source.binlog import constants as c
from cdc_offload.source.binlog.framing import PacketStream
from cdc_offload.source.binlog.protocol import (
    DumpConnection,
    close_quietly,
    connect,
    parse_error,
    start_dump,
)
from cdc_offload.source.binlog.schema_names import SchemaNames, server_writes_no_names
from cdc_offload.source.binlog.tablemap import TableMapError
from cdc_offload.source.binlog.tables import CACHE_LIMIT, Decoder, Watched
from cdc_offload.source.framer import TransactionFramer, reading
from cdc_offload.source.gtid import MysqlGtidSet
from cdc_offload.source.server_facts import COMPRESSED, ServerFacts, SourceRefused, server_facts

Buffer = bytes | bytearray

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_MARIADB_GTID_BODY = struct.Struct("<QIB").unpack_from
_TABLE_ID_MASK = (1 << 48) - 1
_NO_NAMES = (
    "the binlog has no column names for a watched table (binlog_row_metadata is MINIMAL): the reader stops "
    "rather than guess which value is which. SET GLOBAL binlog_row_metadata = FULL on the source server (and "
    "in its config; on RDS/Aurora in the DB parameter group), then `cdc-offload position set --now`: rows "
    "since the checkpoint are Moodle's to send"
)
_TAGGED_GTID = (
    "a tagged GTID (MySQL 8.4+, `SET gtid_next = 'AUTOMATIC:tag'`) at {where}: this reader cannot keep such a "
    "GTID set and would resume in the wrong place. Stop tagging transactions on the source, then `cdc-offload "
    "position set --now`; rows since the checkpoint are Moodle's to send"
)
_STATEMENT_FORMAT = (
    "an INSERT on a watched table was written in statement format (a session with binlog_format=STATEMENT or "
    "MIXED): its row is not in the binlog and is left to Moodle. Keep binlog_format=ROW for every session "
    "(revoke SESSION_VARIABLES_ADMIN / SUPER from the application account)"
)
# The start of a statement-format INSERT/REPLACE and the table it names (comments and modifiers
# skipped). Only ever matched against the statement's first bytes, and never logged: the
# statement holds the password.
_INSERT_STATEMENT = re.compile(
    rb"\s*(?:/\*.*?\*/\s*)*(?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*"
    rb"(?:INTO\s+)?(?:`([^`]+)`|([^\s`.(]+))(?:\s*\.\s*(?:`([^`]+)`|([^\s`.(]+)))?",
    re.I | re.S,
)
# How often, at most, event counts are reported (at a commit or heartbeat), as BinlogSource does.
_COUNTS_EVERY = 0.25


class FastBinlogReader:
    """Reads from a committed checkpoint onwards; stops on the first error (the pipeline rebuilds
    it from its own committed checkpoint). Same constructor and iteration as `BinlogSource`."""

    def __init__(
        self,
        settings: Settings,
        start: Checkpoint,
        *,
        blocking: bool = True,
        end: Position | None = None,
        on_wait: Callable[[], None] | None = None,
        watched: Watched | None = None,
    ) -> None:
        """`on_wait` is called whenever the next read would wait for the server. `watched`: the
        tables to decode, if not the settings' two (tests replaying other servers' files)."""
        self._settings = settings
        self._on_wait = on_wait
        self._start = start
        self._end = end
        self._blocking = blocking
        self._watched = watched or Watched.from_settings(settings)
        self._dump: DumpConnection | None = None
        self._facts: ServerFacts | None = None
        self._schema_names: SchemaNames | None = None

    def close(self) -> None:
        dump, self._dump = self._dump, None
        if dump is not None:
            dump.close()
        schema_names, self._schema_names = self._schema_names, None
        if schema_names is not None:
            schema_names.close()

    def __iter__(self) -> Iterator[SourceItem]:
        try:
            yield from reading(self._items(), self._settings, self._start)
        finally:
            self.close()

    def _items(self) -> Iterator[SourceItem]:
        settings = self._settings
        # One connection for the checks and the dump: each new one costs a TLS context (~45 ms of
        # CPU) and a handshake, at every session's start.
        connection = connect(settings.source, settings.read_timeout)
        try:
            facts = server_facts(settings, self._start, connection)
            if server_writes_no_names(facts.version, facts.row_metadata):
                # MySQL 5.6/5.7, MariaDB before 10.5: names from INFORMATION_SCHEMA, read now on
                # this connection (the dump takes it over next), checked against every table-map.
                self._schema_names = SchemaNames.read(
                    connection,
                    self._watched.schema,
                    [table.table for table in self._watched.tables],
                    lambda: connect(settings.source, settings.read_timeout),
                )
        except BaseException:
            close_quietly(connection)
            raise
        by_gtid = settings.resume == "gtid" and bool(self._start.gtid)
        mysql_gtids: bytes | None = None
        if by_gtid and not facts.mariadb:
            try:
                mysql_gtids = MysqlGtidSet(self._start.gtid).encode()
            except ValueError:
                close_quietly(connection)
                raise SourceRefused(
                    f"the checkpoint's GTID {self._start.gtid!r} is not a MySQL GTID set, and {settings.source} is "
                    "MySQL: resume by position (--resume position) or pick a start with `cdc-offload position set`"
                ) from None
        self._facts = facts
        dump = self._dump = start_dump(
            connection,
            server_id=settings.server_id,
            file=self._start.position.file,
            offset=self._start.position.offset,
            blocking=self._blocking,
            heartbeat=settings.heartbeat if self._blocking else None,
            read_timeout=settings.read_timeout,
            mariadb_gtid=self._start.gtid if by_gtid and facts.mariadb else None,
            mysql_gtids=mysql_gtids,
        )
        stream = PacketStream(dump.sock, on_wait=self._on_wait)
        try:
            yield from self._events(stream, dump)
        finally:
            stream.close()

    def _events(self, stream: PacketStream, dump: DumpConnection) -> Iterator[SourceItem]:
        # Kept as one long loop on purpose: it is the measured hot path (benchmarks/bench_reader.py),
        # and a call per event would cost more than the work on a skipped event. For the same
        # reason everything it touches per event is a local; the framer is called only at
        # transaction-level events (GTID, BEGIN, XID, ROTATE), a few per transaction.
        end = self._end
        watched = self._watched
        prefixes = watched.prefixes
        # Until the first FORMAT_DESCRIPTION (only the dump's fake ROTATE comes before it): what we
        # told the server. From then on, each file's own setting, read from its FORMAT_DESCRIPTION:
        # a file written before `binlog_checksum` changed keeps its old one.
        crc = c.CHECKSUM_LEN if dump.checksum else 0
        crc32 = zlib.crc32
        u32 = _U32
        u64 = _U64
        mask = _TABLE_ID_MASK
        write_rows = frozenset({c.WRITE_ROWS_V1, c.WRITE_ROWS_V2})
        update_rows = c.UPDATE_ROWS
        table_map = c.TABLE_MAP
        skipped_rows = c.SKIPPED_ROWS
        schema_names = self._schema_names
        # A decoder is cached per table shape (the table-map after its table id). Where names come
        # from INFORMATION_SCHEMA the id is part of the key: a new id is checked afresh.
        shape_at = 20 if schema_names is not None else 26

        log_file = self._start.position.file
        assert self._facts is not None  # set by _items before the dump starts
        framer = TransactionFramer(self._start, mariadb=dump.mariadb, server_id=self._facts.server_id)
        insert_id: int | None = None  # from an INTVAR event: the next statement's first AUTO_INCREMENT
        tables: dict[int, Decoder] = {}  # table id -> decoder, watched tables of this file only
        updated: dict[int, Decoder] = {}  # table id -> decoder, the outbox's only (its UPDATEs are read)
        shapes: dict[bytes, Decoder] = {}  # table-map body after the table id (+ checksum kind) -> decoder
        # Until the first FORMAT_DESCRIPTION: the lengths every server since MySQL 5.6 uses.
        post_header: tuple[int, ...] = ()
        map_header = 8
        rows_headers = (8, 10)
        server_version: tuple[int, ...] = (0, 0, 0)

        # Event counts for the throughput metric. The kinds BinlogSource counts are counted the
        # same way (it sees only those); "other" is every event it never sees (skipped rows
        # events, table-maps, ...), which this reader still reads.
        events = writes = xids = queries = rotates = gtid_events = heartbeats = 0
        reported_at = time.monotonic()

        data, q, stop = stream.data, 0, 0
        sequence = 1
        while True:
            if stop - q < 4:
                data, q, stop = stream.refill(q, stop, 4)
            length = data[q] | data[q + 1] << 8 | data[q + 2] << 16
            if data[q + 3] != sequence:
                # PyMySQL's reading: a packet numbered 0 is the server going away mid-stream.
                if data[q + 3] == 0:
                    raise SourceError("the binlog connection was lost")
                raise SourceError("binlog protocol error: a packet out of sequence")
            ev: Buffer
            if length == c.MAX_PACKET_PAYLOAD:
                # An event of 16 MiB or more comes as several packets.
                ev, parts, data, q, stop = stream.join_split(q, stop)
                sequence = (sequence + parts) & 0xFF
                p, e = 0, len(ev)
            else:
                p = q + 4
                e = p + length
                if e > stop:
                    data, q, stop = stream.refill(q, stop, 4 + length)
                    continue
                q = e
                sequence = (sequence + 1) & 0xFF
                ev = data
            events += 1

            status = ev[p]
            if status:
                if status == 0xFE and e - p < 9:
                    # EOF: the end of the binlog in non-blocking mode.
                    events -= 1
                    if events:
                        yield _counts(events, writes, xids, queries, rotates, gtid_events, heartbeats)
                    return
                if status == 0xFF:
                    raise parse_error(ev[p:e])
                raise SourceError(f"binlog protocol error: unexpected packet type {status}")

            kind = ev[p + 5]
            if kind in write_rows:
                if tables:
                    decoder = tables.get(u64(ev, p + 20)[0] & mask)
                    if decoder is not None:
                        writes += 1
                        yield from _write_rows(decoder, ev, p, e, framer.boundary, crc, rows_headers)
                        if end is not None and framer.past(end):
                            return
                continue
            if kind in skipped_rows:
                continue
            if kind in update_rows:
                # Only the outbox's are decoded; every other table's (mdl_user's on each login)
                # costs this one dictionary look-up.
                if updated:
                    decoder = updated.get(u64(ev, p + 20)[0] & mask)
                    if decoder is not None:
                        yield from _update_rows(decoder, ev, p, e, framer.boundary, crc, rows_headers)
                continue
            if kind == table_map:
                if ev.startswith(prefixes, p + 20 + map_header):
                    stop_at = e - crc
                    if crc and crc32(ev[p + 1 : stop_at]) != u32(ev, stop_at)[0]:
                        raise _checksum_error(log_file, ev, p)
                    # The file's checksum setting is part of the shape: a library decoder strips it.
                    key = bytes(ev[p + shape_at : stop_at]) + (b"c" if crc else b"n")
                    decoder = shapes.get(key)
                    if decoder is None:
                        if len(shapes) >= CACHE_LIMIT:
                            shapes.clear()
                        decoder = shapes[key] = watched.decoder(
                            bytes(ev[p + 20 : stop_at]),
                            bytes(ev[p:e]),
                            table_map_post_header=map_header,
                            mariadb=dump.mariadb,
                            checksum=bool(crc),
                            post_header_lengths=post_header,
                            server_version=server_version,
                            schema_names=schema_names,
                        )
                    table_id = u64(ev, p + 20)[0] & mask
                    tables[table_id] = decoder
                    if decoder.updates is not None:
                        updated[table_id] = decoder
                    else:
                        updated.pop(table_id, None)
                elif tables:
                    # Table ids are reused after a restart: an id that was ours may not be now.
                    table_id = u64(ev, p + 20)[0] & mask
                    tables.pop(table_id, None)
                    updated.pop(table_id, None)
                continue

            if kind == c.MARIADB_GTID:
                _verify(crc, ev, p, e, log_file)
                seq_no, domain, flags = _MARIADB_GTID_BODY(ev, p + 20)
                gtid_events += 1
                framer.mariadb_gtid(domain, f"{domain}-{u32(ev, p + 6)[0]}-{seq_no}", bool(flags & c.GTID_STANDALONE))
            elif kind == c.XID:
                _verify(crc, ev, p, e, log_file)
                xids += 1
                if time.monotonic() - reported_at > _COUNTS_EVERY:
                    yield _counts(events, writes, xids, queries, rotates, gtid_events, heartbeats)
                    events = writes = xids = queries = rotates = gtid_events = heartbeats = 0
                    reported_at = time.monotonic()
                insert_id = None
                yield framer.commit(log_file, u32(ev, p + 14)[0], u32(ev, p + 1)[0])
            elif kind == c.QUERY:
                _verify(crc, ev, p, e, log_file)
                queries += 1
                body = p + 20
                query_header = post_header[c.QUERY - 1] if len(post_header) >= c.QUERY else 13
                db_at = body + query_header + _U16(ev, body + 11)[0]
                text_at = db_at + ev[body + 8] + 1
                size = e - crc - text_at
                head = bytes(ev[text_at : text_at + min(size, 64)]).strip().upper()
                if head.startswith((b"INSERT", b"REPLACE", b"/*")):
                    # Statement format on a watched table: reported with the boundary before it.
                    table = self._statement_table(ev, db_at, text_at, e - crc)
                    if table is not None:
                        outbox = watched.tables[-1].keys is not None and table == watched.tables[-1].table
                        yield Undecodable(
                            table,
                            framer.boundary,
                            u32(ev, p + 1)[0],
                            _STATEMENT_FORMAT,
                            insert_id if outbox else None,
                            None,
                            statement_format=True,
                        )
                    insert_id = None
                short = size <= 64
                committed = framer.query(
                    begin=short and head == b"BEGIN",
                    commit=short and head == b"COMMIT",
                    file=log_file,
                    offset=u32(ev, p + 14)[0],
                    timestamp=u32(ev, p + 1)[0],
                )
                if committed is not None:
                    insert_id = None
                    yield committed
            elif kind == c.INTVAR:
                if ev[p + 20] == c.INTVAR_INSERT_ID:
                    insert_id = u64(ev, p + 21)[0]
            elif kind == c.ROTATE:
                rotates += 1
                # The dump's first ROTATE (fake, before any FORMAT_DESCRIPTION) carries a checksum
                # if the server's binlog_checksum did when we connected: recognised by its CRC.
                has_crc = e - p > 1 + 19 + 8 + 4 and crc32(ev[p + 1 : e - 4]) == u32(ev, e - 4)[0]
                log_file = ev[p + 28 : e - (4 if has_crc else 0)].decode()
                tables.clear()
                updated.clear()
                framer.rotate(log_file, u64(ev, p + 20)[0])
            elif kind == c.FORMAT_DESCRIPTION:
                post_header, server_version, crc = _format_description(ev, p, e, log_file)
                map_header = post_header[c.TABLE_MAP - 1]
                rows_headers = (post_header[c.WRITE_ROWS_V1 - 1], post_header[c.WRITE_ROWS_V2 - 1])
                tables.clear()
                updated.clear()
                continue
            elif kind in (c.HEARTBEAT, c.HEARTBEAT_V2):
                # (HEARTBEAT_V2 is MySQL 8.0.26+; the library ignores it, leaving Idle unsent.)
                heartbeats += 1
                if time.monotonic() - reported_at > _COUNTS_EVERY:
                    yield _counts(events, writes, xids, queries, rotates, gtid_events, heartbeats)
                    events = writes = xids = queries = rotates = gtid_events = heartbeats = 0
                    reported_at = time.monotonic()
                yield Idle(time.time())
            elif kind == c.MYSQL_GTID:
                _verify(crc, ev, p, e, log_file)
                gtid_events += 1
                # Body: flags (1), the server's UUID (16), the transaction number (8).
                framer.mysql_gtid(bytes(ev[p + 21 : p + 37]), u64(ev, p + 37)[0])
            elif kind == c.GTID_TAGGED:
                raise SourceRefused(_TAGGED_GTID.format(where=f"{log_file}:{u32(ev, p + 14)[0]}"))
            elif kind in c.MARIADB_COMPRESSED or kind == c.TRANSACTION_PAYLOAD:
                # The library drops these silently (rows lost, boundaries missed): refuse instead.
                raise SourceRefused(f"a compressed binlog event (type {kind}) at {log_file}: " + COMPRESSED)
            elif kind == c.START_V3:
                raise SourceRefused(_too_old(log_file, "a binlog format older than MySQL 5.0"))
            else:
                continue
            if end is not None and framer.past(end):
                return

    def _statement_table(self, ev: Buffer, db_at: int, text_at: int, stop: int) -> str | None:
        """The watched table a statement-format INSERT writes to, or None."""
        found = _INSERT_STATEMENT.match(bytes(ev[text_at : min(stop, text_at + 512)]))
        if found is None:
            return None
        first = found.group(1) or found.group(2)
        second = found.group(3) or found.group(4)
        if second is not None:
            schema, table = first, second
        else:
            schema, table = bytes(ev[db_at : text_at - 1]), first
        watched = self._watched
        if schema.decode(errors="replace") != watched.schema:
            return None
        name = table.decode(errors="replace")
        return next((t.table for t in watched.tables if t.table == name), None)


def _verify(crc: int, ev: Buffer, p: int, e: int, log_file: str) -> None:
    if crc and zlib.crc32(ev[p + 1 : e - crc]) != _U32(ev, e - crc)[0]:
        raise _checksum_error(log_file, ev, p)


def _checksum_error(log_file: str, ev: Buffer, p: int) -> SourceError:
    return SourceError(f"binlog event checksum mismatch at {log_file}:{_U32(ev, p + 14)[0]}: the stream is corrupt")


def _format_description(ev: Buffer, p: int, e: int, log_file: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """The file's post-header lengths, server version and checksum length; a refusal for
    formats this reader cannot follow."""
    body = p + 20
    version_text = bytes(ev[body + 2 : body + 52]).rstrip(b"\0").decode(errors="replace")
    try:
        server_version = tuple(int(part) for part in version_text.split("-")[0].split("."))
    except ValueError:
        server_version = (0, 0, 0)
    if _U16(ev, body)[0] != 4 or server_version < (5, 6):
        raise SourceRefused(_too_old(log_file, f"a server of version {version_text or 'unknown'}"))
    # Servers since MySQL 5.6.1 end their FORMAT_DESCRIPTION with the file's checksum
    # algorithm and 4 checksum bytes (whatever the algorithm).
    algorithm = ev[e - 5]
    crc = c.CHECKSUM_LEN if algorithm == c.CHECKSUM_ALG_CRC32 else 0
    if algorithm not in (c.CHECKSUM_ALG_OFF, c.CHECKSUM_ALG_CRC32):
        raise SourceRefused(
            f"{log_file} uses binlog checksum algorithm {algorithm}, which this reader does not know: "
            "SET GLOBAL binlog_checksum = CRC32 (or NONE), FLUSH BINARY LOGS, then `cdc-offload position set --now`"
        )
    if crc and zlib.crc32(ev[p + 1 : e - crc]) != _U32(ev, e - crc)[0]:
        raise _checksum_error(log_file, ev, p)
    post_header = tuple(ev[body + 57 : e - 5])
    if len(post_header) < c.WRITE_ROWS_V2 or post_header[c.TABLE_MAP - 1] != 8:
        raise SourceRefused(_too_old(log_file, "a server older than MySQL 5.1.4 (4-byte table ids)"))
    # MySQL 8.4 and 9.x write 0 for the old v1 rows events: they never write them (checked
    # when one arrives). Version 2 rows events carry 10 bytes (table id, flags, extra length).
    if post_header[c.WRITE_ROWS_V1 - 1] not in (0, 8) or post_header[c.WRITE_ROWS_V2 - 1] not in (0, 10):
        raise SourceRefused(
            f"{log_file} declares rows events of a layout this reader does not know "
            f"(post-header lengths {post_header[c.WRITE_ROWS_V1 - 1]}/{post_header[c.WRITE_ROWS_V2 - 1]}): "
            "read it with a newer cdc-offload; rows are Moodle's to send meanwhile"
        )
    return post_header, server_version, crc


def _payload(ev: Buffer, p: int, rows_headers: tuple[int, int]) -> int:
    """Where the rows of a rows event begin (after the post-header and v2's extra data)."""
    if ev[p + 5] in (c.WRITE_ROWS_V1, c.UPDATE_ROWS_V1):
        if not rows_headers[0]:
            raise SourceRefused(
                "a version 1 rows event in a binlog file whose FORMAT_DESCRIPTION says it has none: "
                "the file is corrupt or of an unknown server; rows are Moodle's to send"
            )
        return p + 20 + rows_headers[0]
    return p + 20 + rows_headers[1] + int(_U16(ev, p + 28)[0]) - 2


def _write_rows(
    decoder: Decoder,
    ev: Buffer,
    p: int,
    e: int,
    boundary: Checkpoint,
    crc: int,
    rows_headers: tuple[int, int],
) -> Iterator[SourceItem]:
    stop = e - crc
    if crc and zlib.crc32(ev[p + 1 : stop]) != _U32(ev, stop)[0]:
        raise SourceError("binlog event checksum mismatch in a watched rows event: the stream is corrupt")
    if not decoder.has_names:
        raise SourceRefused(_NO_NAMES)
    timestamp = _U32(ev, p + 1)[0]
    payload = _payload(ev, p, rows_headers)
    try:
        rows = decoder.rows.rows(ev, p, e, payload, stop)
    except TableMapError as error:
        yield Undecodable(decoder.table, boundary, timestamp, str(error))
        return
    except Exception as error:  # noqa: BLE001 - any decoder failure leaves the event's rows to Moodle
        yield Undecodable(decoder.table, boundary, timestamp, f"row decoding failed: {type(error).__name__}")
        return
    # Differs from BinlogSource in one respect: text that is not UTF-8 reaches rows.py as
    # bytes, so only that row is Undecodable (the library gives up on the whole event).
    for values in rows:
        if not decoder.fast and any(name.startswith("UNKNOWN_COL") for name in values):
            raise SourceRefused(_NO_NAMES)
        try:
            row = decoder.convert(values)
        except ValueError as error:
            yield Undecodable(
                decoder.table,
                boundary,
                timestamp,
                str(error),
                getattr(error, "outbox_id", None),
                getattr(error, "userid", None),
            )
            continue
        yield ChangeEvent(row, boundary, timestamp)


def _update_rows(
    decoder: Decoder,
    ev: Buffer,
    p: int,
    e: int,
    boundary: Checkpoint,
    crc: int,
    rows_headers: tuple[int, int],
) -> Iterator[SourceItem]:
    """One `OutboxUpdate` per changed outbox row. An UPDATE we cannot read is counted as
    undecodable (no row is at stake: it only tells who sent what)."""
    stop = e - crc
    if crc and zlib.crc32(ev[p + 1 : stop]) != _U32(ev, stop)[0]:
        raise SourceError("binlog event checksum mismatch in a watched rows event: the stream is corrupt")
    updates, keys = decoder.updates, decoder.keys
    assert updates is not None and keys is not None
    timestamp = _U32(ev, p + 1)[0]
    try:
        pairs = updates.update_rows(ev, p, e, _payload(ev, p, rows_headers), stop)
        items = [
            OutboxUpdate(
                _integer(before[keys.id]),
                _integer(before[keys.userid]),
                _optional_integer(before[keys.sent]),
                _optional_integer(after[keys.sent]),
                boundary,
                timestamp,
                None if keys.modifiedtime is None else before[keys.modifiedtime] != after[keys.modifiedtime],
            )
            for before, after in pairs
        ]
    except Exception as error:  # noqa: BLE001 - an unreadable UPDATE is reported, never guessed at
        yield Undecodable(decoder.table, boundary, timestamp, f"outbox UPDATE not decoded: {type(error).__name__}")
        return
    yield from items


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _optional_integer(value: object) -> int | None:
    return None if value is None else _integer(value)


def _too_old(log_file: str, what: str) -> SourceRefused:
    return SourceRefused(
        f"{log_file} was written by {what}: this reader reads MySQL 5.6 and 5.7 (column names from "
        "INFORMATION_SCHEMA, checked against each table-map), 8.0 (with binlog_row_metadata=FULL), 8.4 and 9.x and "
        "MariaDB 10.5+ binlogs. Upgrade the source server, then `cdc-offload position set --now`; rows are "
        "Moodle's to send"
    )


def _counts(
    events: int, writes: int, xids: int, queries: int, rotates: int, gtids: int, heartbeats: int
) -> EventCounts:
    named = (
        ("write_rows", writes),
        ("xid", xids),
        ("query", queries),
        ("rotate", rotates),
        ("gtid", gtids),
        ("heartbeat", heartbeats),
    )
    other = events - writes - xids - queries - rotates - gtids - heartbeats
    return EventCounts(tuple((kind, count) for kind, count in (*named, ("other", other)) if count))
