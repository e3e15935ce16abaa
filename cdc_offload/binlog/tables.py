"""The two watched tables: recognising their table-maps by name bytes, and the cached decoder
(plus the rows.py conversion) for each table shape seen."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cdc_offload.binlog import tablemap
from cdc_offload.binlog.decoders import FastRows, fast_path_possible
from cdc_offload.binlog.library import LibraryRows
from cdc_offload.binlog.tablemap import TableMap, TableMapError
from cdc_offload.model import OutboxRow, UserRow
from cdc_offload.rows import outbox_from_values, user_from_values
from cdc_offload.settings import OUTBOX_LOGICAL_COLUMNS, Settings, TableNames

Buffer = bytes | bytearray
USER_COLUMNS = ("id", "username", "firstname", "lastname", "email", "auth", "deleted", "suspended")

# Shapes kept at most: every ALTER TABLE (and every table-definition-cache reload after a
# restart) adds one; clearing now and then is cheaper than an LRU on the hot path.
CACHE_LIMIT = 256

Converter = Callable[[Mapping[str, object]], UserRow | OutboxRow]


class Rows(Protocol):
    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]: ...


@dataclass(frozen=True, slots=True)
class Decoder:
    """What a watched rows event needs: the table's name, its rows, and our row type."""

    table: str
    has_names: bool
    rows: Rows
    convert: Converter
    fast: bool


def _name_prefix(schema: str, table: str) -> bytes:
    # The table-map body after the post-header: length byte, schema, NUL, length byte, table, NUL.
    s, t = schema.encode(), table.encode()
    return bytes([len(s)]) + s + b"\0" + bytes([len(t)]) + t + b"\0"


class Watched:
    def __init__(self, settings: Settings) -> None:
        names: TableNames = settings.tables
        self.schema = settings.source.database
        self.user_table = names.user_table
        self.outbox_table = names.outbox_table
        self.prefixes = (_name_prefix(self.schema, self.user_table), _name_prefix(self.schema, self.outbox_table))
        self.user_columns: tuple[str, ...] = USER_COLUMNS
        self.outbox_columns = tuple(dict.fromkeys(names.column(logical) for logical in OUTBOX_LOGICAL_COLUMNS))

        def outbox(values: Mapping[str, object]) -> UserRow | OutboxRow:
            return outbox_from_values(values, names)

        self._convert_outbox = outbox

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
    ) -> Decoder:
        """A decoder for a watched table-map. `body`: the event after its header, without the
        checksum; `packet`: the whole packet, kept only if the library has to decode the table."""
        is_user = body.startswith(self.prefixes[0], table_map_post_header)
        name = self.user_table if is_user else self.outbox_table
        wanted = self.user_columns if is_user else self.outbox_columns
        convert: Converter = user_from_values if is_user else self._convert_outbox
        try:
            table: TableMap | None = tablemap.parse(body, table_map_post_header, mariadb=mariadb)
        except TableMapError:
            table = None  # a type we do not know: the library may
        if table is not None and table.has_names and fast_path_possible(table, wanted, mariadb):
            return Decoder(name, True, FastRows(table, wanted, mariadb), convert, fast=True)
        if table is not None and not table.has_names:
            return Decoder(name, False, _NoRows(), convert, fast=False)
        try:
            rows = LibraryRows(
                packet,
                mariadb=mariadb,
                checksum=checksum,
                post_header_lengths=post_header_lengths,
                server_version=server_version,
            )
        except Exception as error:  # noqa: BLE001 - whatever the library trips on, we report the table
            problem = type(error).__name__
            raise TableMapError(f"the table-map of {self.schema}.{name} cannot be read ({problem})") from None
        return Decoder(name, True, rows, convert, fast=False)


class _NoRows:
    """For a table-map without column names: the reader refuses before decoding anything."""

    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]:
        raise TableMapError("no column names")
