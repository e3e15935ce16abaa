"""A TABLE_MAP event's body as column definitions: types, type metadata, nullability, and the
optional metadata (names, signedness, charsets, ENUM/SET values) that binlog_row_metadata=FULL adds.

Parsed only for watched tables (and then cached by the caller): an unwatched table-map is
recognised by its name bytes alone and never comes here.
"""

from __future__ import annotations

import struct
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


def _column_metadata(index: int, column_type: int, meta: bytes | bytearray, pos: int) -> tuple[dict[str, int], int]:
    if column_type in _NO_METADATA:
        return {}, pos
    if column_type == c.T_VARCHAR:
        return {"max_length": meta[pos] | meta[pos + 1] << 8}, pos + 2
    if column_type in (c.T_FLOAT, c.T_DOUBLE):
        return {"size": meta[pos]}, pos + 1
    if column_type in (c.T_TIMESTAMP2, c.T_DATETIME2, c.T_TIME2):
        return {"fsp": meta[pos]}, pos + 1
    if column_type in (c.T_BLOB, c.T_GEOMETRY, c.T_JSON):
        return {"length_size": meta[pos]}, pos + 1
    if column_type == c.T_NEWDECIMAL:
        return {"precision": meta[pos], "decimals": meta[pos + 1]}, pos + 2
    if column_type == c.T_BIT:
        return {"bits": meta[pos + 1] * 8 + meta[pos]}, pos + 2
    if column_type in (c.T_STRING, c.T_VAR_STRING, c.T_ENUM, c.T_SET):
        packed = meta[pos] << 8 | meta[pos + 1]
        real_type = packed >> 8
        if real_type in (c.T_ENUM, c.T_SET):
            return {"type": real_type, "size": packed & 0xFF}, pos + 2
        return {"max_length": (((packed >> 4) & 0x300) ^ 0x300) + (packed & 0xFF)}, pos + 2
    raise TableMapError(f"column {index} has type {column_type}, which this reader does not know")


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


def _parse(body: bytes | bytearray, post_header_len: int, mariadb: bool) -> TableMap:
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
    null_bytes = bytes(body[pos : pos + (count + 7) // 8])
    pos += (count + 7) // 8

    names: list[str] = []
    unsigned_bits: bytes = b""
    default_collation: int | None = None
    collation_by_position: dict[int, int] = {}
    column_collations: list[int] = []
    enum_lists: list[tuple[str, ...]] = []
    set_lists: list[tuple[str, ...]] = []
    end = len(body)
    while pos < end:
        kind = body[pos]
        length, pos = read_lenenc(body, pos + 1)
        stop = pos + length
        if stop > end:
            raise TableMapError("optional metadata runs past the event")
        if kind == c.MD_SIGNEDNESS:
            unsigned_bits = bytes(body[pos:stop])
        elif kind == c.MD_DEFAULT_CHARSET:
            default_collation, cursor = read_lenenc(body, pos)
            while cursor < stop:
                position, cursor = read_lenenc(body, cursor)
                collation_by_position[position], cursor = read_lenenc(body, cursor)
        elif kind == c.MD_COLUMN_CHARSET:
            cursor = pos
            while cursor < stop:
                value, cursor = read_lenenc(body, cursor)
                column_collations.append(value)
        elif kind == c.MD_COLUMN_NAME:
            cursor = pos
            while cursor < stop:
                name_len, cursor = read_lenenc(body, cursor)
                names.append(bytes(body[cursor : cursor + name_len]).decode())
                cursor += name_len
        elif kind == c.MD_ENUM_STR_VALUE:
            enum_lists = _string_lists(body, pos, stop)
        elif kind == c.MD_SET_STR_VALUE:
            set_lists = _string_lists(body, pos, stop)
        # Everything else (primary keys, geometry types, ENUM/SET charsets, visibility) does not
        # change how a value decodes.
        pos = stop

    if names and len(names) != count:
        raise TableMapError("the column names do not match the column count")
    columns: list[Column] = []
    numeric_seen = 0
    character_seen = 0
    enum_seen = 0
    set_seen = 0
    for index, spec in enumerate(specs):
        column_type = spec["type"]
        unsigned = False
        if column_type in c.NUMERIC_TYPES:
            byte, bit = divmod(numeric_seen, 8)
            unsigned = byte < len(unsigned_bits) and bool(unsigned_bits[byte] & (0x80 >> bit))
            numeric_seen += 1
        collation: int | None = None
        if is_character(column_type, mariadb):
            if column_collations:
                collation = column_collations[character_seen] if character_seen < len(column_collations) else None
            elif default_collation is not None:
                collation = collation_by_position.get(character_seen, default_collation)
            character_seen += 1
        enum_values: tuple[str, ...] | None = None
        set_values: tuple[str, ...] | None = None
        if column_type == c.T_ENUM:
            if enum_seen < len(enum_lists):
                enum_values = ("", *enum_lists[enum_seen])
            enum_seen += 1
        elif column_type == c.T_SET:
            if set_seen < len(set_lists):
                set_values = set_lists[set_seen]
            set_seen += 1
        columns.append(
            Column(
                index=index,
                type=column_type,
                nullable=bool(null_bytes[index >> 3] & (1 << (index & 7))),
                name=names[index] if names else None,
                unsigned=unsigned,
                max_length=spec.get("max_length", 0),
                length_size=spec.get("length_size", 0),
                size=spec.get("size", 0),
                fsp=spec.get("fsp", 0),
                precision=spec.get("precision", 0),
                decimals=spec.get("decimals", 0),
                bits=spec.get("bits", 0),
                collation=collation,
                enum_values=enum_values,
                set_values=set_values,
            )
        )
    return TableMap(table_id=table_id, schema=schema, table=table, columns=tuple(columns))
