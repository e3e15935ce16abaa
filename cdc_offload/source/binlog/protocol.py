"""Opening the dump connection: PyMySQL for the handshake and session settings, then our own
COM_BINLOG_DUMP, after which the socket is read directly (see `framing`)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload import tls
from cdc_offload.mysql_connection import connection_kwargs
from cdc_offload.settings import Dsn
from cdc_offload.source.binlog.constants import (
    BINLOG_DUMP_NON_BLOCK,
    BINLOG_THROUGH_GTID,
    COM_BINLOG_DUMP,
    COM_BINLOG_DUMP_GTID,
)

# The largest value MySQL documents for MASTER_HEARTBEAT_PERIOD, in seconds.
_MAX_HEARTBEAT = 4294967.0


class ServerError(Exception):
    """An ERR packet in the stream. `message` is the server's text: it names files and
    positions, never row content."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass
class DumpConnection:
    connection: pymysql.Connection[Any]
    sock: socket.socket
    checksum: bool
    mariadb: bool

    def close(self) -> None:
        close_quietly(self.connection)


def close_quietly(connection: pymysql.Connection[Any]) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken link must not mask the first error
        force_close = getattr(connection, "_force_close", None)
        if force_close is not None:
            force_close()


def parse_error(payload: bytes | bytearray) -> ServerError:
    """An ERR packet's payload (0xff, code, optional '#' + SQLSTATE, message), as PyMySQL reads it."""
    code = struct.unpack_from("<H", payload, 1)[0] if len(payload) >= 3 else 0
    text = payload[9:] if len(payload) > 3 and payload[3] == ord("#") else payload[3:]
    return ServerError(code, bytes(text).decode("utf-8", "replace"))


def connect(dsn: Dsn, read_timeout: float) -> pymysql.Connection[Any]:
    """The connection a dump will run on (through cdc_offload.tls like every other: the DSN's TLS
    settings, verified), with the same settings as every other connection to the source."""
    return tls.connect(dsn, connection_kwargs(dsn, read_timeout))


def dump_request(*, server_id: int, file: str, offset: int, blocking: bool, mysql_gtids: bytes | None) -> bytes:
    """The dump command as one packet (header included, sequence id 0).

    COM_BINLOG_DUMP: command, position (4), flags (2), server id (4), file name (rest).
    COM_BINLOG_DUMP_GTID (MySQL): command, flags (2), server id (4), file name length (4) and
    name, position (8), then with BINLOG_THROUGH_GTID the encoded GTID set's length (4) and bytes.
    """
    flags = 0 if blocking else BINLOG_DUMP_NON_BLOCK
    name = file.encode()
    if mysql_gtids is None:
        payload = struct.pack("<BIHI", COM_BINLOG_DUMP, offset, flags, server_id) + name
    else:
        payload = (
            struct.pack("<BHII", COM_BINLOG_DUMP_GTID, flags | BINLOG_THROUGH_GTID, server_id, len(name))
            + name
            + struct.pack("<QI", offset, len(mysql_gtids))
            + mysql_gtids
        )
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def start_dump(
    connection: pymysql.Connection[Any],
    *,
    server_id: int,
    file: str,
    offset: int,
    blocking: bool,
    heartbeat: float | None,
    read_timeout: float,
    mariadb_gtid: str | None = None,
    mysql_gtids: bytes | None = None,
) -> DumpConnection:
    """A dump from file/offset, or from a GTID state: MariaDB's `mariadb_gtid` (the last GTID per
    domain), or MySQL's encoded executed set `mysql_gtids` (the server then sends every
    transaction not in it). With a GTID the server starts in whichever file holds the next
    transaction and says which in its first ROTATE. The connection is the dump's from here on
    (closed if starting it fails)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@global.binlog_checksum, @@version")
            row = cursor.fetchone()
            checksum = row is not None and str(row[0]).upper() != "NONE"
            mariadb = row is not None and "mariadb" in str(row[1]).lower()
            # Tell the server we understand checksums, or it refuses to stream (or strips them).
            # MySQL 8.0.26+ reads @source_binlog_checksum first and falls back to the master_
            # spelling (sql/rpl_binlog_sender.cc, Binlog_sender::init_checksum_alg); MariaDB and
            # older MySQL read only @master_binlog_checksum. Setting both is harmless everywhere.
            cursor.execute(
                "SET @master_binlog_checksum = @@global.binlog_checksum, "
                "@source_binlog_checksum = @@global.binlog_checksum"
            )
            if heartbeat is not None:
                period = int(min(read_timeout / 2.0, heartbeat, _MAX_HEARTBEAT) * 1_000_000_000)
                # Same two spellings (Binlog_sender::init_heartbeat_period), in nanoseconds.
                cursor.execute("SET @master_heartbeat_period = %s, @source_heartbeat_period = %s", (period, period))
            # Capability 4 (GTID aware): MariaDB sends its GTID events instead of dummies.
            cursor.execute("SET @mariadb_slave_capability = 4")
            if mariadb_gtid is not None:
                cursor.execute("SET @slave_connect_state = %s", (mariadb_gtid,))
                cursor.execute("SET @slave_gtid_strict_mode = 1")
                cursor.execute("SET @slave_gtid_ignore_duplicates = 0")
        by_gtid = mariadb_gtid is not None or mysql_gtids is not None
        # With a GTID start the file name is empty and the offset 4 (the GTIDs say where).
        packet = dump_request(
            server_id=server_id,
            file="" if by_gtid else file,
            offset=4 if by_gtid else offset,
            blocking=blocking,
            mysql_gtids=mysql_gtids,
        )
        # PyMySQL is done with the connection from here on: the socket is ours to read.
        sock: socket.socket = getattr(connection, "_sock")  # noqa: B009 - private, not in the stubs
        sock.settimeout(read_timeout)
        sock.sendall(packet)
    except BaseException:
        close_quietly(connection)
        raise
    return DumpConnection(connection, sock, checksum, mariadb)
