"""Numbers from the MySQL/MariaDB replication protocol that the reader dispatches on."""

from __future__ import annotations

from typing import Final

# Event types (byte 4 of the common event header).
START_V3: Final = 0x01
QUERY: Final = 0x02
STOP: Final = 0x03
ROTATE: Final = 0x04
INTVAR: Final = 0x05
FORMAT_DESCRIPTION: Final = 0x0F
XID: Final = 0x10
TABLE_MAP: Final = 0x13
WRITE_ROWS_V1: Final = 0x17
UPDATE_ROWS_V1: Final = 0x18
DELETE_ROWS_V1: Final = 0x19
HEARTBEAT: Final = 0x1B
WRITE_ROWS_V2: Final = 0x1E
UPDATE_ROWS_V2: Final = 0x1F
DELETE_ROWS_V2: Final = 0x20
MYSQL_GTID: Final = 0x21
PARTIAL_UPDATE_ROWS: Final = 0x27
TRANSACTION_PAYLOAD: Final = 0x28
HEARTBEAT_V2: Final = 0x29
GTID_TAGGED: Final = 0x2A
MARIADB_GTID: Final = 0xA2
MARIADB_GTID_LIST: Final = 0xA3

# MariaDB's compressed events (log_bin_compress): QUERY_COMPRESSED .. DELETE_ROWS_COMPRESSED.
MARIADB_COMPRESSED: Final = frozenset(range(0xA5, 0xAC))

# Row events never decoded: DELETEs, and MySQL's partial JSON updates, skipped by their type byte
# however wide their images are. UPDATEs are decoded for the outbox table alone (looked up by
# table id; every other table's are skipped as cheaply).
SKIPPED_ROWS: Final = frozenset({DELETE_ROWS_V1, DELETE_ROWS_V2, PARTIAL_UPDATE_ROWS})
UPDATE_ROWS: Final = frozenset({UPDATE_ROWS_V1, UPDATE_ROWS_V2})

# INTVAR subtype: the AUTO_INCREMENT value the next statement-format INSERT starts from.
INTVAR_INSERT_ID: Final = 2

# MariaDB GTID event flag: a statement without BEGIN/COMMIT (DDL).
GTID_STANDALONE: Final = 0x01

# Sizes in the common header and the protocol.
EVENT_HEADER_LEN: Final = 19
CHECKSUM_LEN: Final = 4
MAX_PACKET_PAYLOAD: Final = 0xFFFFFF
COM_BINLOG_DUMP: Final = 0x12
COM_BINLOG_DUMP_GTID: Final = 0x1E
BINLOG_DUMP_NON_BLOCK: Final = 0x01
BINLOG_THROUGH_GTID: Final = 0x04
CHECKSUM_ALG_OFF: Final = 0
CHECKSUM_ALG_CRC32: Final = 1

# Column types as they appear in a table-map event.
T_DECIMAL: Final = 0
T_TINY: Final = 1
T_SHORT: Final = 2
T_LONG: Final = 3
T_FLOAT: Final = 4
T_DOUBLE: Final = 5
T_NULL: Final = 6
T_TIMESTAMP: Final = 7
T_LONGLONG: Final = 8
T_INT24: Final = 9
T_DATE: Final = 10
T_TIME: Final = 11
T_DATETIME: Final = 12
T_YEAR: Final = 13
T_NEWDATE: Final = 14
T_VARCHAR: Final = 15
T_BIT: Final = 16
T_TIMESTAMP2: Final = 17
T_DATETIME2: Final = 18
T_TIME2: Final = 19
T_VECTOR: Final = 242  # MySQL 9.0
T_JSON: Final = 245
T_NEWDECIMAL: Final = 246
T_ENUM: Final = 247
T_SET: Final = 248
T_BLOB: Final = 252
T_VAR_STRING: Final = 253
T_STRING: Final = 254
T_GEOMETRY: Final = 255

# Columns that carry a bit in the SIGNEDNESS optional metadata (python-mysql-replication's list,
# which MariaDB 10.11 agrees with, YEAR included).
NUMERIC_TYPES: Final = frozenset(
    {T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_NEWDECIMAL, T_FLOAT, T_DOUBLE, T_YEAR}
)

# Optional metadata field types (TLV) of a table-map event.
MD_SIGNEDNESS: Final = 1
MD_DEFAULT_CHARSET: Final = 2
MD_COLUMN_CHARSET: Final = 3
MD_COLUMN_NAME: Final = 4
MD_SET_STR_VALUE: Final = 5
MD_ENUM_STR_VALUE: Final = 6
MD_ENUM_AND_SET_DEFAULT_CHARSET: Final = 10
MD_ENUM_AND_SET_COLUMN_CHARSET: Final = 11

BINARY_COLLATION: Final = 63
