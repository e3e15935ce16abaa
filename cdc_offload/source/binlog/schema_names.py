"""Column names for servers that cannot write them into the binlog (MySQL before 8.0.1, so 5.6
and 5.7; MariaDB before 10.5): read from INFORMATION_SCHEMA.COLUMNS and trusted for a table-map
only when they describe the same columns.

INFORMATION_SCHEMA holds the table as it is *now*; a table-map describes it as it was when its
rows were written. Between the two an ALTER may have added, dropped or changed columns, and
pairing the current names with older rows would put values under the wrong names (python-
mysql-replication's `use_column_name_cache` does exactly that). So every table-map is checked
against the definition read: the same column count and, column by column, a binlog type that
the declared type is written as (with its length, precision or fractional seconds) and the same
nullability. A table-map that disagrees is re-read against a fresh definition once; if it still
disagrees its rows are not decoded (the caller leaves them to Moodle). A table-map with a new
table id is checked against a fresh definition too: the table may have been altered since.

What no check can see: an ALTER that only renames columns, or swaps two columns of the same
type, leaves the shape unchanged. Moodle's upgrades add, drop and retype columns; the README
says what an operator of a 5.7 server must not do to the two watched tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import pymysql
from pymysql.charset import charset_by_name

from cdc_offload.source.binlog import constants as c
from cdc_offload.source.binlog.tablemap import Column, TableMap

# The first versions whose binlog can carry column names (`binlog_row_metadata`).
NAMES_SINCE_MYSQL = (8, 0, 1)
NAMES_SINCE_MARIADB = (10, 5, 0)

_QUERY = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, "
    "NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_SET_NAME FROM INFORMATION_SCHEMA.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)

Connection: TypeAlias = "pymysql.Connection[Any]"


def server_writes_no_names(version: str, row_metadata: str | None) -> bool:
    """True for a server that cannot put column names in its binlog at all. A server that can but
    is set not to (`binlog_row_metadata` MINIMAL or NO_LOG) is not one: it is told to."""
    if row_metadata is not None:
        return False
    try:
        numbers = tuple(int(part) for part in version.split("-", maxsplit=1)[0].split(".")[:3])
    except ValueError:
        return False
    since = NAMES_SINCE_MARIADB if "mariadb" in version.lower() else NAMES_SINCE_MYSQL
    return numbers < since


@dataclass(frozen=True, slots=True)
class SchemaColumn:
    """One row of INFORMATION_SCHEMA.COLUMNS: what a table-map is checked against."""

    name: str
    data_type: str  # lower case: int, varchar, longtext, ...
    column_type: str  # the full declaration: int(10) unsigned, enum('a','b'), ...
    nullable: bool
    octet_length: int | None = None  # CHAR/VARCHAR/BINARY/VARBINARY: maximum bytes
    precision: int | None = None  # DECIMAL digits, BIT bits
    scale: int | None = None
    fsp: int | None = None  # DATETIME/TIMESTAMP/TIME fractional digits
    charset: str | None = None  # None: a binary string, or not a string


def read_columns(connection: Connection, schema: str, table: str) -> tuple[SchemaColumn, ...]:
    """The table's columns in ORDINAL_POSITION order (the order of a table-map and a row image);
    empty if the account cannot see the table."""
    with connection.cursor() as cursor:
        cursor.execute(_QUERY, (schema, table))
        rows = cursor.fetchall()
    return tuple(
        SchemaColumn(
            name=str(row[0]),
            data_type=str(row[1]).lower(),
            column_type=str(row[2]).lower(),
            nullable=str(row[3]).upper() == "YES",
            octet_length=_optional_int(row[4]),
            precision=_optional_int(row[5]),
            scale=_optional_int(row[6]),
            fsp=_optional_int(row[7]),
            charset=None if row[8] is None else str(row[8]),
        )
        for row in rows
    )


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


# -- is the table-map this definition? --------------------------------------------------------

_INTEGERS = {
    "tinyint": c.T_TINY,
    "smallint": c.T_SHORT,
    "mediumint": c.T_INT24,
    "int": c.T_LONG,
    "integer": c.T_LONG,
    "bigint": c.T_LONGLONG,
}
# Declared type -> (its binlog type since MySQL 5.6.4, the whole-second type of older tables).
_TEMPORAL = {
    "datetime": (c.T_DATETIME2, c.T_DATETIME),
    "timestamp": (c.T_TIMESTAMP2, c.T_TIMESTAMP),
    "time": (c.T_TIME2, c.T_TIME),
}
_BLOB_PREFIX = {"tiny": 1, "": 2, "medium": 3, "long": 4}
_GEOMETRY = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"}
    | {"geometrycollection", "geomcollection"}
)
_TYPE_NAMES = {
    c.T_TINY: "TINYINT",
    c.T_SHORT: "SMALLINT",
    c.T_INT24: "MEDIUMINT",
    c.T_LONG: "INT",
    c.T_LONGLONG: "BIGINT",
    c.T_FLOAT: "FLOAT",
    c.T_DOUBLE: "DOUBLE",
    c.T_NEWDECIMAL: "DECIMAL",
    c.T_BIT: "BIT",
    c.T_DATE: "DATE",
    c.T_NEWDATE: "DATE",
    c.T_DATETIME: "DATETIME",
    c.T_DATETIME2: "DATETIME",
    c.T_TIMESTAMP: "TIMESTAMP",
    c.T_TIMESTAMP2: "TIMESTAMP",
    c.T_TIME: "TIME",
    c.T_TIME2: "TIME",
    c.T_YEAR: "YEAR",
    c.T_STRING: "CHAR",
    c.T_VARCHAR: "VARCHAR",
    c.T_BLOB: "BLOB/TEXT",
    c.T_ENUM: "ENUM",
    c.T_SET: "SET",
    c.T_JSON: "JSON",
    c.T_GEOMETRY: "GEOMETRY",
}
_LABEL = re.compile(r"'((?:[^']|'')*)'")


def _labels(column_type: str) -> tuple[str, ...]:
    """ENUM/SET labels from the declaration (quotes inside a label are doubled there)."""
    inside = column_type[column_type.find("(") + 1 : column_type.rfind(")")]
    return tuple(label.replace("''", "'") for label in _LABEL.findall(inside))


def _set_bytes(count: int) -> int:
    size = (count + 7) // 8
    return 8 if size > 4 else size


def _temporal(column: Column, declared: SchemaColumn) -> bool:
    new, old = _TEMPORAL[declared.data_type]
    # Tables from before MySQL 5.6.4 keep the old, whole-second format until rebuilt.
    return (column.type == new and column.fsp == (declared.fsp or 0)) or (column.type == old and not declared.fsp)


def _blob(column: Column, declared: SchemaColumn) -> bool:
    data_type = declared.data_type
    prefix = _BLOB_PREFIX.get(data_type[: -len("text")] if data_type.endswith("text") else data_type[:-4])
    return column.type == c.T_BLOB and column.length_size == prefix


def _decimal(column: Column, declared: SchemaColumn) -> bool:
    shape = (column.precision, column.decimals)
    return column.type == c.T_NEWDECIMAL and shape == (declared.precision, declared.scale)


def _fixed_string(column: Column, declared: SchemaColumn) -> bool:
    return column.type == c.T_STRING and column.max_length == declared.octet_length


def _var_string(column: Column, declared: SchemaColumn) -> bool:
    return column.type == c.T_VARCHAR and column.max_length == declared.octet_length


def _enum(column: Column, declared: SchemaColumn) -> bool:
    return column.type == c.T_ENUM and column.size == (1 if len(_labels(declared.column_type)) < 256 else 2)


def _set(column: Column, declared: SchemaColumn) -> bool:
    return column.type == c.T_SET and column.size == _set_bytes(len(_labels(declared.column_type)))


# Declared type -> its binlog type, where the type alone decides.
_BINLOG_TYPE = {
    **_INTEGERS,
    "float": c.T_FLOAT,
    "double": c.T_DOUBLE,
    "real": c.T_DOUBLE,
    "double precision": c.T_DOUBLE,
    "year": c.T_YEAR,
    "json": c.T_JSON,
    **dict.fromkeys(_GEOMETRY, c.T_GEOMETRY),
}
# Declared type -> whether a binlog column has its shape too (size, precision, labels).
_SHAPED: dict[str, Callable[[Column, SchemaColumn], bool]] = {
    "decimal": _decimal,
    "numeric": _decimal,
    "bit": lambda column, declared: column.type == c.T_BIT and column.bits == declared.precision,
    "date": lambda column, _: column.type in (c.T_DATE, c.T_NEWDATE),
    **dict.fromkeys(_TEMPORAL, _temporal),
    "char": _fixed_string,
    "binary": _fixed_string,
    "varchar": _var_string,
    "varbinary": _var_string,
    "enum": _enum,
    "set": _set,
}


def _compatible(column: Column, declared: SchemaColumn) -> bool:
    """Whether a column declared as `declared` is written to the binlog as `column`."""
    data_type = declared.data_type
    if data_type in _BINLOG_TYPE:
        return column.type == _BINLOG_TYPE[data_type]
    if data_type in _SHAPED:
        return _SHAPED[data_type](column, declared)
    if data_type.endswith(("text", "blob")):
        return _blob(column, declared)
    return False


def _described(column: Column) -> str:
    name = _TYPE_NAMES.get(column.type, f"type {column.type}")
    null = "NULL" if column.nullable else "NOT NULL"
    return f"{name} {null}"


def disagreement(table: TableMap, columns: Sequence[SchemaColumn]) -> str | None:
    """Why `columns` cannot be the columns `table` was written with, or None when they can."""
    if len(columns) != len(table.columns):
        return f"the binlog has {len(table.columns)} columns, INFORMATION_SCHEMA now {len(columns)}"
    for column, declared in zip(table.columns, columns, strict=True):
        if not _compatible(column, declared) or column.nullable != declared.nullable:
            now = f"{declared.column_type} {'NULL' if declared.nullable else 'NOT NULL'}"
            return (
                f"column {column.index + 1} is {_described(column)} in the binlog, "
                f"`{declared.name}` {now} in INFORMATION_SCHEMA"
            )
    return None


def _collation(declared: SchemaColumn) -> int | None:
    """A collation id of the column's character set: the decoders only need its encoding."""
    if declared.charset is None:
        return c.BINARY_COLLATION
    charset = charset_by_name(declared.charset)
    return None if charset is None else int(getattr(charset, "id"))  # noqa: B009 - not in the stubs


def named(table: TableMap, columns: Sequence[SchemaColumn]) -> TableMap:
    """`table` with what a FULL-metadata table-map would carry: names, signedness, character
    sets, ENUM/SET labels. Only for columns `disagreement` accepted."""
    filled = []
    for column, declared in zip(table.columns, columns, strict=True):
        labels = _labels(declared.column_type) if column.type in (c.T_ENUM, c.T_SET) else ()
        filled.append(
            replace(
                column,
                name=declared.name,
                unsigned=column.type in c.NUMERIC_TYPES and " unsigned" in f" {declared.column_type}",
                collation=_collation(declared),
                enum_values=("", *labels) if column.type == c.T_ENUM else None,
                set_values=labels if column.type == c.T_SET else None,
            )
        )
    return replace(table, columns=tuple(filled))


def unknown_charset(columns: Sequence[SchemaColumn]) -> SchemaColumn | None:
    """A string column whose character set this reader cannot name (its values would be guessed)."""
    return next((col for col in columns if col.charset is not None and charset_by_name(col.charset) is None), None)


# -- per reader session ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Known:
    columns: tuple[SchemaColumn, ...]
    table_id: int | None  # the table-map these were last found to match


class SchemaNames:
    """The definitions of the watched tables, read when the session starts (on the reader's own
    connection, before its dump) and again, on a second connection opened the first time it is
    needed, whenever a table-map does not match them or comes with a new table id."""

    def __init__(
        self,
        schema: str,
        first: dict[str, tuple[SchemaColumn, ...]],
        open_connection: Callable[[], Connection],
    ) -> None:
        self._schema = schema
        self._known = {table: _Known(columns, None) for table, columns in first.items()}
        self._open_connection = open_connection
        self._connection: Connection | None = None
        self.reads = len(first)  # how often INFORMATION_SCHEMA was asked (for tests and logs)

    @classmethod
    def read(
        cls, connection: Connection, schema: str, tables: Sequence[str], open_connection: Callable[[], Connection]
    ) -> SchemaNames:
        return cls(schema, {table: read_columns(connection, schema, table) for table in tables}, open_connection)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken side connection must not mask the reader's error
                force_close = getattr(connection, "_force_close", None)
                if force_close is not None:
                    force_close()

    def _reread(self, table: str) -> tuple[SchemaColumn, ...]:
        if self._connection is None:
            self._connection = self._open_connection()
        self.reads += 1
        return read_columns(self._connection, self._schema, table)

    def resolve(self, table: TableMap) -> TableMap | str:
        """`table` with its column names, or the one sentence why none can be given."""
        known = self._known.get(table.table)
        fresh = known is None or (known.table_id is not None and known.table_id != table.table_id)
        columns = self._reread(table.table) if fresh or known is None else known.columns
        problem = self._problem(table, columns)
        if problem is not None and not fresh:
            # Read before this table-map was seen: the table may have changed since. One fresh
            # look before giving up on it.
            columns = self._reread(table.table)
            problem = self._problem(table, columns)
        if problem is not None:
            self._known[table.table] = _Known(columns, None)
            return problem
        self._known[table.table] = _Known(columns, table.table_id)
        return named(table, columns)

    def _problem(self, table: TableMap, columns: tuple[SchemaColumn, ...]) -> str | None:
        where = f"{self._schema}.{table.table}"
        if not columns:
            return (
                f"INFORMATION_SCHEMA shows the reader no columns of {where}, and this server writes no column "
                f"names into its binlog: GRANT SELECT ON {where} to the reader's account; its rows are left to "
                "Moodle meanwhile"
            )
        mismatch = disagreement(table, columns)
        if mismatch is not None:
            return (
                f"the binlog's table-map of {where} does not match the table's definition now ({mismatch}): the "
                "table was altered after these rows were written, and this server writes no column names into "
                "its binlog, so its rows are left to Moodle rather than guessed; rows written after the ALTER "
                "are read again without any action"
            )
        odd = unknown_charset(columns)
        if odd is not None:
            return (
                f"column `{odd.name}` of {where} uses character set {odd.charset}, which this reader does not "
                "know: its rows are left to Moodle. Convert the table to utf8mb4 (Moodle's requirement)"
            )
        return None
