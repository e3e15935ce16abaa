"""What the source server is, and whether reading it from a checkpoint could skip rows (the rules
on the server's settings are `rules.RULES`, shared with `check`; the rules on the checkpoint are
here).

Shared by both binlog readers (`library_reader.BinlogSource`, the library's, and `binlog.FastBinlogReader`)
so they connect, refuse and fail closed alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload import tls
from cdc_offload.errors import PositionLost, SourceError
from cdc_offload.model import Checkpoint, Position
from cdc_offload.mysql_connection import connection_kwargs
from cdc_offload.settings import Dsn, Settings
from cdc_offload.source.rules import VARIABLES, refusal

ER_SLAVE_SAME_ID = 4052
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236
COMPRESSED = (
    "it cannot be read and would be skipped. Turn log_bin_compress / binlog_transaction_compression OFF on the "
    "source, then `cdc-offload position set --now`; rows since the checkpoint are Moodle's to send"
)


class SourceRefused(PositionLost):
    """The source cannot be read without risking a silent skip (binlog off, compressed events, a
    server_id clash, a file/offset of another server): fail closed, Moodle keeps sending."""


@dataclass(frozen=True, slots=True)
class ServerFacts:
    mariadb: bool
    server_id: int
    version: str = ""
    # None where the server has no such setting (MySQL before 8.0.1, MariaDB before 10.5): its
    # binlog never carries column names.
    row_metadata: str | None = None


def server_facts(
    settings: Settings, start: Checkpoint, connection: pymysql.Connection[Any] | None = None
) -> ServerFacts:
    """What the source server is, and a refusal when reading it from `start` could skip rows.
    On `connection` when given (the reader's own, before its dump starts), else on a new one."""
    own = connection is None
    if connection is None:
        connection = tls.connect(settings.source, connection_kwargs(settings.source, 10.0))
    try:
        with connection.cursor() as cursor:
            values = read_variables(cursor, ("version", *VARIABLES))
    finally:
        if own:
            connection.close()
    version = values.get("version", "")
    facts = ServerFacts(
        "mariadb" in version.lower(),
        int(values.get("server_id", "0") or 0),
        version,
        values.get("binlog_row_metadata"),
    )
    refused = refusal(values, settings.server_id, str(settings.source))
    if refused is not None:
        raise SourceRefused(refused)
    by_gtid = settings.resume == "gtid" and bool(start.gtid)
    if not by_gtid and not start.position.file:
        # `position set --gtid` saves no file: read by position, the dump would start at the
        # server's oldest binlog file.
        raise SourceRefused(
            "the checkpoint holds only a GTID (from `position set --gtid`): run with --resume gtid, "
            "or set a file/offset with `cdc-offload position set FILE:OFFSET` or `--now`"
        )
    if not by_gtid and start.source_server_id is not None and start.source_server_id != str(facts.server_id):
        raise SourceRefused(
            f"the checkpoint {start.position} is a file/offset of the server with server_id {start.source_server_id}, "
            f"but {settings.source} has server_id {facts.server_id}: the same offset means other rows there. "
            "Resume by GTID (--resume gtid) if the servers share GTIDs, or pick a start with "
            "`cdc-offload position set`"
        )
    return facts


def read_variables(cursor: Any, names: tuple[str, ...]) -> dict[str, str]:
    """`SHOW GLOBAL VARIABLES` for `names`, keyed by lower-case name (absent ones are left out)."""
    cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")", names)
    return {str(name).lower(): str(value) for name, value in cursor.fetchall()}


def binlog_status(cursor: Any) -> Any:
    try:
        cursor.execute("SHOW MASTER STATUS")
    except pymysql.err.ProgrammingError:
        # MySQL 8.4 removed SHOW MASTER STATUS.
        cursor.execute("SHOW BINARY LOG STATUS")
    return cursor.fetchone()


def current_end(dsn: Dsn) -> Checkpoint:
    """The server's end of binlog now: where a first run starts (never the oldest file)."""
    connection = tls.connect(dsn, connection_kwargs(dsn))
    try:
        with connection.cursor() as cursor:
            row = binlog_status(cursor)
            if row is None:
                raise SourceError("the binlog is off on the source server: start it with --log-bin")
            gtid = None
            cursor.execute("SELECT @@version, @@server_id")
            version_row = cursor.fetchone()
            server_id = str(version_row[1]) if version_row is not None else None
            if version_row is not None and "mariadb" in str(version_row[0]).lower():
                cursor.execute("SELECT @@gtid_binlog_pos")
                gtid_row = cursor.fetchone()
                gtid = str(gtid_row[0]) if gtid_row and gtid_row[0] else None
            elif len(row) > 4 and row[4]:
                # MySQL: Executed_Gtid_Set, the whole set (empty when gtid_mode is OFF).
                gtid = str(row[4]).replace("\n", "") or None
            # The server this file/offset belongs to: a position resume elsewhere is refused.
            return Checkpoint(Position(str(row[0]), int(row[1])), gtid=gtid, source_server_id=server_id)
    finally:
        connection.close()


def cannot_resume(settings: Settings, start: Checkpoint, server_text: str) -> PositionLost:
    """Error 1236: the server has no binlog at our start. The server's text names no row data."""
    if "not open" in server_text.lower():
        return SourceRefused(
            f"the binlog is off on the source server {settings.source} (MySQL error 1236): start it "
            "with --log-bin, then `cdc-offload position set --now`; rows meanwhile are Moodle's to send"
        )
    if settings.resume == "gtid" and start.gtid:
        where = f"GTID {start.gtid}"
        why = "no longer (or never) in this server's binlog: purged, or a server that did not replicate it"
    else:
        where = f"{start.position}"
        why = "purged from the server's binlog, or this is another server"
    return PositionLost(
        f"the source server cannot resume at {where} (MySQL error 1236): {why}. Rows since then are Moodle's "
        "to send; pick a new start with `cdc-offload position set --now`"
    )


def same_id_refused(settings: Settings) -> SourceRefused:
    return SourceRefused(
        f"another replica connected to the source with our --server-id {settings.server_id} "
        "(MySQL error 4052): two readers with one id take turns cutting each other off. Give each "
        "reader and replica its own --server-id"
    )
