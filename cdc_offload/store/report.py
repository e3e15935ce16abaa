"""The ledger as an operator reads it (`cdc-offload ledger`, the HTTP endpoint): on a short-lived
connection of its own, never the leader's, so it is safe from any thread and holds no lock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc_offload.mysql_connection import connect
from cdc_offload.settings import Dsn
from cdc_offload.store.sql import optional_str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    outbox_id: int
    userid: int
    status: str
    reason: str
    sink: str | None
    message_id: str | None
    attempts: int
    binlog_position: str
    event_time: str | None
    handled_at: str


def ledger_query(
    dsn: Dsn,
    schema: str,
    *,
    userid: int | None = None,
    since: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[LedgerEntry]:
    """Read the ledger on a short-lived connection of its own (safe from any thread)."""
    conditions: list[str] = []
    params: list[Any] = []
    if userid is not None:
        conditions.append("userid = %s")
        params.append(userid)
    if since is not None:
        conditions.append("handled_at >= %s")
        params.append(since)
    if status is not None:
        conditions.append("status = %s")
        params.append(status)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    connection = connect(dsn, autocommit=True, read_timeout=10.0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT outbox_id, userid, status, reason, sink, message_id, attempts, binlog_file, binlog_offset, "
                "DATE_FORMAT(event_time, '%%Y-%%m-%%dT%%H:%%i:%%sZ'), "
                "DATE_FORMAT(handled_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ') "
                f"FROM `{schema}`.`ledger` {where} ORDER BY handled_at DESC, outbox_id DESC LIMIT %s",
                (*params, limit),
            )
            rows = cursor.fetchall()
            return [
                LedgerEntry(
                    outbox_id=int(row[0]),
                    userid=int(row[1]),
                    status=str(row[2]),
                    reason=str(row[3]),
                    sink=optional_str(row[4]),
                    message_id=optional_str(row[5]),
                    attempts=int(row[6]),
                    binlog_position=f"{row[7]}:{row[8]}",
                    event_time=optional_str(row[9]),
                    handled_at=str(row[10]),
                )
                for row in rows
            ]
    finally:
        connection.close()
