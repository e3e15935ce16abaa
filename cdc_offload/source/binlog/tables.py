"""The two watched tables: recognising their table-maps by name bytes, and the cached decoder
(plus the rows.py conversion) for each table shape seen."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from cdc_offload.model import OutboxRow, UserRow
from cdc_offload.rows import outbox_from_values, user_from_values
from cdc_offload.settings import OUTBOX_LOGICAL_COLUMNS, Settings, TableNames
from cdc_offload.source.binlog import tablemap
from cdc_offload.source.binlog.decoders import FastRows, RowDecodeError, fast_path_possible, plan
from cdc_offload.source.binlog.library import LibraryRows
from cdc_offload.source.binlog.schema_names import SchemaNames
from cdc_offload.source.binlog.tablemap import TableMapError

Buffer = bytes | bytearray
USER_COLUMNS = ("id", "username", "firstname", "lastname", "email", "auth", "deleted", "suspended")

# Shapes kept at most: every ALTER TABLE (and every table-definition-cache reload after a
# restart) adds one; clearing now and then is cheaper than an LRU on the hot path.
CACHE_LIMIT = 256

Converter = Callable[[Mapping[str, object]], UserRow | OutboxRow]


class Rows(Protocol):
    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]: ...


class UpdateRows(Protocol):
    def update_rows(
        self, data: Buffer, packet: int, packet_end: int, payload: int, end: int
    ) -> list[tuple[dict[str, object], dict[str, object]]]: ...


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The outbox columns an UPDATE is read for: which row, whose, and its `sent` before/after."""

    id: str
    userid: str
    sent: str
    # IOMAD's task sets it when it marks a row; our claim and restore never touch it. None: the
    # site's outbox has no such column.
    modifiedtime: str | None = None

    def columns(self) -> tuple[str, ...]:
        return (self.id, self.userid, self.sent) + ((self.modifiedtime,) if self.modifiedtime else ())


@dataclass(frozen=True, slots=True)
class Decoder:
    """What a watched rows event needs: the table's name, its rows, and our row type."""

    table: str
    has_names: bool
    rows: Rows
    convert: Converter
    fast: bool
    # The outbox only: its UPDATEs' rows, and which columns hold id, userid and sent.
    updates: UpdateRows | None = None
    keys: OutboxKeys | None = None


@dataclass(frozen=True, slots=True)
class WatchedTable:
    """One table whose INSERTs are decoded. `columns` None: every column (for tests that replay
    other servers' files); `keys`: decode its UPDATEs too (the outbox)."""

    table: str
    columns: tuple[str, ...] | None
    convert: Converter
    keys: OutboxKeys | None = None


def _name_prefix(schema: str, table: str) -> bytes:
    # The table-map body after the post-header: length byte, schema, NUL, length byte, table, NUL.
    s, t = schema.encode(), table.encode()
    return bytes([len(s)]) + s + b"\0" + bytes([len(t)]) + t + b"\0"


class Watched:
    def __init__(self, schema: str, tables: Sequence[WatchedTable]) -> None:
        self.schema = schema
        self.tables = tuple(tables)
        self.prefixes = tuple(_name_prefix(schema, table.table) for table in self.tables)

    @classmethod
    def from_settings(cls, settings: Settings) -> Watched:
        names: TableNames = settings.tables

        def outbox(values: Mapping[str, object]) -> UserRow | OutboxRow:
            return outbox_from_values(values, names)

        outbox_columns = tuple(dict.fromkeys(names.column(logical) for logical in OUTBOX_LOGICAL_COLUMNS))
        keys = OutboxKeys(names.column("id"), names.column("userid"), names.column("sent"), "modifiedtime")
        return cls(
            settings.source.database,
            (
                WatchedTable(names.user_table, USER_COLUMNS, user_from_values),
                WatchedTable(names.outbox_table, outbox_columns, outbox, keys),
            ),
        )

    def decoder(
        self,
        body: bytes,
        packet: bytes,
        *,
        table_map_post_header: int,
        mariadb: bool,
        checksum: bool,
        post_header_lengths: Sequence[int],
        server_version: tuple[int, ...],
        schema_names: SchemaNames | None = None,
    ) -> Decoder:
        """A decoder for a watched table-map. `body`: the event after its header, without the
        checksum; `packet`: the whole packet, kept only if the library has to decode the table.
        `schema_names`: where a table-map without names gets them, on a server that writes none."""
        at = table_map_post_header
        pairs = zip(self.tables, self.prefixes, strict=True)
        watched = next((t for t, prefix in pairs if body.startswith(prefix, at)), self.tables[-1])
        name = watched.table
        try:
            table = tablemap.parse(body, table_map_post_header, mariadb=mariadb)
        except TableMapError as error:
            # A column type this reader does not know (MySQL 9's VECTOR, ...) cannot even be
            # stepped over, and the library would misread it too: the table's rows go to Moodle.
            problem = f"the table-map of {self.schema}.{name} cannot be read ({error}): its rows are left to Moodle"
            return Decoder(name, True, _Unreadable(problem), watched.convert, fast=False)
        if not table.has_names:
            named = _named(table, schema_names, watched)
            if isinstance(named, Decoder):
                return named
            table = named
        wanted = watched.columns if watched.columns is not None else tuple(str(c.name) for c in table.columns)
        keys = watched.keys
        names = {column.name for column in table.columns}
        if keys is not None and not {keys.id, keys.userid, keys.sent} <= names:
            keys = None  # a renamed column: its INSERTs say so; its UPDATEs are not read
        if keys is not None and keys.modifiedtime not in names:
            keys = replace(keys, modifiedtime=None)
        key_columns = keys.columns() if keys is not None else ()
        if fast_path_possible(table, wanted, mariadb):
            updates: UpdateRows | None = None
            if keys is not None and fast_path_possible(table, key_columns, mariadb):
                updates = FastRows(table, key_columns, mariadb)
            rows: Rows = FastRows(table, wanted, mariadb)
            if keys is None or updates is not None or schema_names is not None:
                return Decoder(name, True, rows, watched.convert, True, updates, keys if updates is not None else None)
        if schema_names is not None:
            # The library would decode this table-map without the names we found (and without
            # signedness or character sets): no fallback, the table's rows go to Moodle.
            problem = (
                f"column `{_first_undecodable(table, wanted, mariadb)}` of {self.schema}.{name} has a type this "
                "reader decodes only from a binlog with column metadata (TIME, JSON, text not in UTF-8), and this "
                "server writes none: its rows are left to Moodle"
            )
            return Decoder(name, True, _Unreadable(problem), watched.convert, fast=False)
        return self._library_decoder(
            packet,
            watched,
            keys,
            LibraryFormat(mariadb, checksum, tuple(post_header_lengths), server_version),
        )

    def _library_decoder(
        self, packet: bytes, watched: WatchedTable, keys: OutboxKeys | None, stream: LibraryFormat
    ) -> Decoder:
        """The library decodes the table's rows (a type the fast path does not read)."""
        try:
            library = LibraryRows(
                packet,
                mariadb=stream.mariadb,
                checksum=stream.checksum,
                post_header_lengths=stream.post_header_lengths,
                server_version=stream.server_version,
            )
        except Exception as error:  # noqa: BLE001 - whatever the library trips on, we report the table
            problem = f"the table-map of {self.schema}.{watched.table} cannot be read ({type(error).__name__})"
            return Decoder(watched.table, True, _Unreadable(problem), watched.convert, fast=False)
        keys_read = library if keys is not None else None
        return Decoder(watched.table, True, library, watched.convert, False, keys_read, keys)


@dataclass(frozen=True, slots=True)
class LibraryFormat:
    """What the library needs to know of the stream to decode one table-map's rows."""

    mariadb: bool
    checksum: bool
    post_header_lengths: tuple[int, ...]
    server_version: tuple[int, ...]


def _named(
    table: tablemap.TableMap, schema_names: SchemaNames | None, watched: WatchedTable
) -> tablemap.TableMap | Decoder:
    """A table-map without column names, with the names INFORMATION_SCHEMA gives, or the decoder
    that refuses its rows (no names to be had: the reader fails closed on it)."""
    if schema_names is None:
        return Decoder(watched.table, False, _Unreadable("no column names"), watched.convert, fast=False)
    resolved = schema_names.resolve(table)
    if isinstance(resolved, str):
        return Decoder(watched.table, True, _Unreadable(resolved), watched.convert, fast=False)
    return resolved


def _first_undecodable(table: tablemap.TableMap, wanted: Sequence[str], mariadb: bool) -> str:
    for column in table.columns:
        if column.name in wanted:
            try:
                if not plan(column, mariadb).decodable:
                    return str(column.name)
            except RowDecodeError:
                return str(column.name)
    return "?"


class _Unreadable:
    """For a table-map we cannot use: every rows event of the table is refused with `problem`
    (the reader leaves its rows to Moodle, or fails closed when the column names are missing)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]:
        raise TableMapError(self.problem)
