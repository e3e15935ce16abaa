"""A TABLE_MAP event's body as column definitions: types, type metadata, nullability, and the
optional metadata (names, signedness, charsets, ENUM/SET values) that binlog_row_metadata=FULL adds.

Parsed only for watched tables (and then cached by the caller): an unwatched table-map is
recognised by its name bytes alone and never comes here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cdc_offload.source.binlog import constants as c


class TableMapError(ValueError):
    """The table-map cannot be understood (unknown column type, inconsistent metadata)."""


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    type: int  # the real type: ENUM/SET are resolved from a STRING column's metadata
    nullable: bool
    name: str | None = None
    unsigned: bool = False
    max_length: int = 0  # VARCHAR / CHAR: maximum length in bytes
    length_size: int = 0  # BLOB / TEXT / GEOMETRY / JSON: bytes of the length prefix
    size: int = 0  # FLOAT / DOUBLE bytes; ENUM / SET bytes
    fsp: int = 0  # fractional seconds precision of TIME2 / DATETIME2 / TIMESTAMP2
    precision: int = 0
    decimals: int = 0
    bits: int = 0  # BIT(n)
    collation: int | None = None
    enum_values: tuple[str, ...] | None = None
    set_values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TableMap:
    table_id: int
    schema: str
    table: str
    columns: tuple[Column, ...] = field(default_factory=tuple)

    @property
    def has_names(self) -> bool:
        return all(column.name is not None for column in self.columns)


def read_lenenc(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return data[pos + 1] | data[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return data[pos + 1] | data[pos + 2] << 8 | data[pos + 3] << 16, pos + 4
    if first == 0xFE:
        return struct.unpack_from("<Q", data, pos + 1)[0], pos + 9
    raise TableMapError("a NULL length where a number belongs")


def is_character(column_type: int, mariadb: bool) -> bool:
    """Columns that have an entry in the charset metadata (MariaDB counts GEOMETRY too)."""
    if column_type in (c.T_STRING, c.T_VAR_STRING, c.T_VARCHAR, c.T_BLOB):
        return True
    return mariadb and column_type == c.T_GEOMETRY


_NO_METADATA = frozenset(
    {
        c.T_TINY,
        c.T_SHORT,
        c.T_INT24,
        c.T_LONG,
        c.T_LONGLONG,
        c.T_DATE,
        c.T_TIME,
        c.T_DATETIME,
        c.T_TIMESTAMP,
        c.T_YEAR,
        c.T_NEWDATE,
        c.T_NULL,
    }
)


_Metadata = tuple[dict[str, int], int]


def _string_metadata(meta: bytes | bytearray, pos: int) -> _Metadata:
    """STRING / VAR_STRING metadata: a CHAR's length, or the real type of an ENUM / SET."""
    packed = meta[pos] << 8 | meta[pos + 1]
    real_type = packed >> 8
    if real_type in (c.T_ENUM, c.T_SET):
        return {"type": real_type, "size": packed & 0xFF}, pos + 2
    return {"max_length": (((packed >> 4) & 0x300) ^ 0x300) + (packed & 0xFF)}, pos + 2


def _one_byte(name: str) -> Callable[[bytes | bytearray, int], _Metadata]:
    def read(meta: bytes | bytearray, pos: int) -> _Metadata:
        return {name: meta[pos]}, pos + 1

    return read


# The type metadata each column type carries: a reader from the metadata block at `pos` to the
# Column fields it sets and the position after it.
_METADATA_READERS: dict[int, Callable[[bytes | bytearray, int], _Metadata]] = {
    **dict.fromkeys(_NO_METADATA, lambda meta, pos: ({}, pos)),
    c.T_VARCHAR: lambda meta, pos: ({"max_length": meta[pos] | meta[pos + 1] << 8}, pos + 2),
    **dict.fromkeys((c.T_FLOAT, c.T_DOUBLE), _one_byte("size")),
    **dict.fromkeys((c.T_TIMESTAMP2, c.T_DATETIME2, c.T_TIME2), _one_byte("fsp")),
    **dict.fromkeys((c.T_BLOB, c.T_GEOMETRY, c.T_JSON), _one_byte("length_size")),
    c.T_NEWDECIMAL: lambda meta, pos: ({"precision": meta[pos], "decimals": meta[pos + 1]}, pos + 2),
    c.T_BIT: lambda meta, pos: ({"bits": meta[pos + 1] * 8 + meta[pos]}, pos + 2),
    **dict.fromkeys((c.T_STRING, c.T_VAR_STRING, c.T_ENUM, c.T_SET), _string_metadata),
}


def _column_metadata(index: int, column_type: int, meta: bytes | bytearray, pos: int) -> _Metadata:
    read = _METADATA_READERS.get(column_type)
    if read is None:
        raise TableMapError(f"column {index} has type {column_type}, which this reader does not know")
    return read(meta, pos)


def _string_lists(data: bytes | bytearray, pos: int, end: int) -> list[tuple[str, ...]]:
    lists: list[tuple[str, ...]] = []
    while pos < end:
        count, pos = read_lenenc(data, pos)
        values: list[str] = []
        for _ in range(count):
            length, pos = read_lenenc(data, pos)
            raw = bytes(data[pos : pos + length])
            pos += length
            try:
                values.append(raw.decode())
            except UnicodeDecodeError:
                # python-mysql-replication's choice for a non-UTF-8 label; kept for equal output.
                values.append("")
        lists.append(tuple(values))
    return lists


def parse(body: bytes | bytearray, post_header_len: int, *, mariadb: bool) -> TableMap:
    """`body`: the event after the 19-byte header, without the checksum."""
    try:
        return _parse(body, post_header_len, mariadb)
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise TableMapError(f"truncated or malformed table-map ({type(error).__name__})") from None


def _header(body: bytes | bytearray, post_header_len: int) -> tuple[int, str, str, int]:
    """The table id, schema and table names, and the position of the column count."""
    if post_header_len == 6:
        table_id = struct.unpack_from("<I", body, 0)[0]
    else:
        table_id = struct.unpack_from("<Q", bytes(body[:6]) + b"\0\0")[0]
    pos = post_header_len
    schema_len = body[pos]
    schema = bytes(body[pos + 1 : pos + 1 + schema_len]).decode()
    pos += schema_len + 2
    table_len = body[pos]
    table = bytes(body[pos + 1 : pos + 1 + table_len]).decode()
    pos += table_len + 2
    return table_id, schema, table, pos


def _column_specs(body: bytes | bytearray, pos: int) -> tuple[int, list[dict[str, int]], int]:
    """The column count, each column's type and type metadata (as Column fields), and the
    position after them."""
    count, pos = read_lenenc(body, pos)
    types = bytes(body[pos : pos + count])
    pos += count
    meta_len, pos = read_lenenc(body, pos)
    meta_end = pos + meta_len
    specs: list[dict[str, int]] = []
    for index, column_type in enumerate(types):
        spec, pos = _column_metadata(index, column_type, body, pos)
        spec.setdefault("type", column_type)
        specs.append(spec)
    if pos != meta_end:
        raise TableMapError("the column metadata does not add up to its declared length")
    return count, specs, pos


@dataclass
class _Optional:
    """The optional metadata (binlog_row_metadata) fields that change how a value decodes."""

    names: list[str] = field(default_factory=list)
    unsigned_bits: bytes = b""
    default_collation: int | None = None
    collation_by_position: dict[int, int] = field(default_factory=dict)
    column_collations: list[int] = field(default_factory=list)
    enum_lists: list[tuple[str, ...]] = field(default_factory=list)
    set_lists: list[tuple[str, ...]] = field(default_factory=list)


def _read_signedness(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    md.unsigned_bits = bytes(body[pos:stop])


def _read_default_charset(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    md.default_collation, cursor = read_lenenc(body, pos)
    while cursor < stop:
        position, cursor = read_lenenc(body, cursor)
        md.collation_by_position[position], cursor = read_lenenc(body, cursor)


def _read_column_charset(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    cursor = pos
    while cursor < stop:
        value, cursor = read_lenenc(body, cursor)
        md.column_collations.append(value)


def _read_column_names(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    cursor = pos
    while cursor < stop:
        name_len, cursor = read_lenenc(body, cursor)
        md.names.append(bytes(body[cursor : cursor + name_len]).decode())
        cursor += name_len


def _read_enum_values(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    md.enum_lists = _string_lists(body, pos, stop)


def _read_set_values(md: _Optional, body: bytes | bytearray, pos: int, stop: int) -> None:
    md.set_lists = _string_lists(body, pos, stop)


# Everything else (primary keys, geometry types, ENUM/SET charsets, visibility) does not change
# how a value decodes, and is stepped over.
_OPTIONAL_READERS: dict[int, Callable[[_Optional, bytes | bytearray, int, int], None]] = {
    c.MD_SIGNEDNESS: _read_signedness,
    c.MD_DEFAULT_CHARSET: _read_default_charset,
    c.MD_COLUMN_CHARSET: _read_column_charset,
    c.MD_COLUMN_NAME: _read_column_names,
    c.MD_ENUM_STR_VALUE: _read_enum_values,
    c.MD_SET_STR_VALUE: _read_set_values,
}


def _optional_metadata(body: bytes | bytearray, pos: int) -> _Optional:
    md = _Optional()
    end = len(body)
    while pos < end:
        kind = body[pos]
        length, pos = read_lenenc(body, pos + 1)
        stop = pos + length
        if stop > end:
            raise TableMapError("optional metadata runs past the event")
        read = _OPTIONAL_READERS.get(kind)
        if read is not None:
            read(md, body, pos, stop)
        pos = stop
    return md


class _ColumnBuilder:
    """Turns column specs into Columns, counting the columns each optional-metadata list covers
    (signedness: numeric columns; charsets: character columns; ENUM / SET values)."""

    def __init__(self, md: _Optional, null_bytes: bytes, mariadb: bool) -> None:
        self.md = md
        self.null_bytes = null_bytes
        self.mariadb = mariadb
        self.numeric_seen = 0
        self.character_seen = 0
        self.enum_seen = 0
        self.set_seen = 0

    def _unsigned(self, column_type: int) -> bool:
        if column_type not in c.NUMERIC_TYPES:
            return False
        byte, bit = divmod(self.numeric_seen, 8)
        unsigned_bits = self.md.unsigned_bits
        self.numeric_seen += 1
        return byte < len(unsigned_bits) and bool(unsigned_bits[byte] & (0x80 >> bit))

    def _collation(self, column_type: int) -> int | None:
        if not is_character(column_type, self.mariadb):
            return None
        md, seen = self.md, self.character_seen
        self.character_seen += 1
        if md.column_collations:
            return md.column_collations[seen] if seen < len(md.column_collations) else None
        if md.default_collation is not None:
            return md.collation_by_position.get(seen, md.default_collation)
        return None

    def _enum_values(self, column_type: int) -> tuple[str, ...] | None:
        if column_type != c.T_ENUM:
            return None
        seen = self.enum_seen
        self.enum_seen += 1
        return ("", *self.md.enum_lists[seen]) if seen < len(self.md.enum_lists) else None

    def _set_values(self, column_type: int) -> tuple[str, ...] | None:
        if column_type != c.T_SET:
            return None
        seen = self.set_seen
        self.set_seen += 1
        return self.md.set_lists[seen] if seen < len(self.md.set_lists) else None

    def column(self, index: int, spec: dict[str, int]) -> Column:
        column_type = spec["type"]
        return Column(
            index=index,
            type=column_type,
            nullable=bool(self.null_bytes[index >> 3] & (1 << (index & 7))),
            name=self.md.names[index] if self.md.names else None,
            unsigned=self._unsigned(column_type),
            max_length=spec.get("max_length", 0),
            length_size=spec.get("length_size", 0),
            size=spec.get("size", 0),
            fsp=spec.get("fsp", 0),
            precision=spec.get("precision", 0),
            decimals=spec.get("decimals", 0),
            bits=spec.get("bits", 0),
            collation=self._collation(column_type),
            enum_values=self._enum_values(column_type),
            set_values=self._set_values(column_type),
        )


def _parse(body: bytes | bytearray, post_header_len: int, mariadb: bool) -> TableMap:
    table_id, schema, table, pos = _header(body, post_header_len)
    count, specs, pos = _column_specs(body, pos)
    null_bytes = bytes(body[pos : pos + (count + 7) // 8])
    pos += (count + 7) // 8
    md = _optional_metadata(body, pos)
    if md.names and len(md.names) != count:
        raise TableMapError("the column names do not match the column count")
    builder = _ColumnBuilder(md, null_bytes, mariadb)
    columns = tuple(builder.column(index, spec) for index, spec in enumerate(specs))
    return TableMap(table_id=table_id, schema=schema, table=table, columns=columns)
