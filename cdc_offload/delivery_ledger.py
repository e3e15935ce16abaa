"""The per-recipient ledger's delivery columns: the SES message id each copy got, and SES's later
word on it (delivered, bounced, complained, rejected, delayed).

Written by `deliver` (after SES accepted a copy) and `events` (as notifications arrive), both on
the writer account's access to the state schema. Either may come before the sidecar's own
commit of the row, so every write is an upsert by (outbox_id, recipient_index) that fills only its
own columns; the sidecar's columns of a row it creates first are placeholders (`kind` unknown)
until the sidecar writes them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload.delivery_event import GRAVITY, DeliveryEvent
from cdc_offload.mysql_connection import connect
from cdc_offload.settings import Dsn, identifier
from cdc_offload.store import address_hash, masked_address
from cdc_offload.store.sql import optional_str

PLACEHOLDER_KIND = "unknown"
# `delivery` while a SendEmail is out and unanswered (never an SES outcome; any event replaces it).
SENDING = "sending"
# The outcomes by gravity, for MySQL's FIELD(): an event replaces the recorded one when it is
# later, or as late and graver (so redelivery and reordering end in the same row).
_BY_GRAVITY = ", ".join(f"'{o.value}'" for o in sorted(GRAVITY, key=GRAVITY.__getitem__))
_NEWER = (
    "(delivery_at IS NULL OR VALUES(delivery_at) > delivery_at OR (VALUES(delivery_at) = delivery_at "
    f"AND FIELD(VALUES(delivery), {_BY_GRAVITY}) > FIELD(delivery, {_BY_GRAVITY})))"
)


@dataclass(frozen=True, slots=True)
class RecipientEntry:
    """One copy of an outbox row as the ledger has it: the sidecar's outcome and SES's."""

    outbox_id: int
    recipient_index: int
    kind: str
    recipient_user_id: int | None
    address: str
    status: str
    # The sidecar's AWS message id (SQS, or SES with --sink ses) and refusal code, if any.
    message_id: str | None
    error_code: str | None
    ses_message_id: str | None
    delivery: str | None
    delivery_detail: str | None
    delivery_at: str | None


@dataclass(frozen=True)
class LedgerCopy:
    """The copy of an outbox row a ledger row is about: one recipient, kept as a hash and a mask."""

    outbox_id: int
    index: int
    kind: str
    user_id: int | None
    address: str

    def identity(self) -> tuple[int, int, str, int | None, str, str]:
        """The row's key and recipient columns, the address never stored as written."""
        return (
            self.outbox_id,
            self.index,
            self.kind,
            self.user_id,
            address_hash(self.address),
            masked_address(self.address),
        )


class DeliveryLedger:
    """Short statements on the writer account, one autocommit connection per thread."""

    def __init__(self, dsn: Dsn, schema: str) -> None:
        self._dsn = dsn
        self._table = f"`{identifier('--state-schema', schema)}`.`ledger_recipient`"
        self._local = threading.local()

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement; a broken connection is replaced once (the statements are idempotent)."""
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            try:
                if connection is None:
                    connection = self._local.connection = connect(self._dsn, autocommit=True, read_timeout=10.0)
                with connection.cursor() as cursor:
                    cursor.execute(sql, tuple(params))
                    return list(cursor.fetchall())
            except pymysql.err.OperationalError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()

    def sent_copies(self, outbox_id: int) -> dict[int, str | None]:
        """recipient index → SES message id for the copies SES accepted, and → None for the copies
        an earlier attempt was sending when it stopped without an answer (a crash, a read timeout):
        SES may or may not have them."""
        rows = self._run(
            f"SELECT recipient_index, ses_message_id FROM {self._table} "
            f"WHERE outbox_id = %s AND (ses_message_id IS NOT NULL OR delivery = '{SENDING}')",
            (outbox_id,),
        )
        return {int(index): None if message_id is None else str(message_id) for index, message_id in rows}

    def mark_sending(self, copy: LedgerCopy) -> None:
        """Written before the SendEmail: a crash before its answer is recorded leaves this mark,
        so the retry knows the copy it sends again may be a duplicate (and counts it)."""
        self._run(
            f"INSERT INTO {self._table} (outbox_id, recipient_index, kind, recipient_user_id, address_hash, "
            "address_masked, status, delivery, updated_at) "
            f"VALUES (%s, %s, %s, %s, %s, %s, 'accepted', '{SENDING}', UTC_TIMESTAMP(6)) "
            f"ON DUPLICATE KEY UPDATE delivery = COALESCE(delivery, '{SENDING}'), updated_at = VALUES(updated_at)",
            copy.identity(),
        )

    def clear_sending(self, outbox_id: int, index: int) -> None:
        """SES refused the copy: nothing went out, a retry is no duplicate."""
        self._run(
            f"UPDATE {self._table} SET delivery = NULL, updated_at = UTC_TIMESTAMP(6) "
            f"WHERE outbox_id = %s AND recipient_index = %s AND delivery = '{SENDING}' AND ses_message_id IS NULL",
            (outbox_id, index),
        )

    def record_sent(self, copy: LedgerCopy, ses_message_id: str) -> None:
        self._run(
            f"INSERT INTO {self._table} (outbox_id, recipient_index, kind, recipient_user_id, address_hash, "
            "address_masked, status, ses_message_id, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'accepted', %s, UTC_TIMESTAMP(6)) "
            "ON DUPLICATE KEY UPDATE ses_message_id = VALUES(ses_message_id), "
            f"delivery = NULLIF(delivery, '{SENDING}'), updated_at = VALUES(updated_at)",
            (*copy.identity(), ses_message_id),
        )

    def record_event(self, event: DeliveryEvent) -> bool:
        """Record `event` on its copy's row; False when no row can be named (no tags, unknown id)."""
        key = (event.outbox_id, event.recipient_index)
        if key[0] is None or key[1] is None:
            found = self._run(
                f"SELECT outbox_id, recipient_index FROM {self._table} WHERE ses_message_id = %s "
                f"UNION SELECT outbox_id, recipient_index FROM {self._table} WHERE message_id = %s LIMIT 1",
                (event.ses_message_id, event.ses_message_id),
            )
            if not found:
                return False
            key = (int(found[0][0]), int(found[0][1]))
        address = event.addresses[0] if event.addresses else ""
        self._run(
            f"INSERT INTO {self._table} (outbox_id, recipient_index, kind, address_hash, address_masked, status, "
            "ses_message_id, delivery, delivery_detail, delivery_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, 'accepted', %s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE "
            "ses_message_id = COALESCE(ses_message_id, VALUES(ses_message_id)), "
            # delivery_at last: the two before it compare against the recorded (old) values.
            f"delivery_detail = IF({_NEWER}, VALUES(delivery_detail), delivery_detail), "
            f"delivery = IF({_NEWER}, VALUES(delivery), delivery), "
            f"delivery_at = IF({_NEWER}, VALUES(delivery_at), delivery_at), "
            "updated_at = VALUES(updated_at)",
            (
                key[0],
                key[1],
                PLACEHOLDER_KIND,
                address_hash(address),
                masked_address(address),
                event.ses_message_id,
                event.outcome.value,
                event.detail,
                event.at,
            ),
        )
        return True


def recipients_of(dsn: Dsn, schema: str, outbox_ids: Sequence[int]) -> list[RecipientEntry]:
    """Every recipient row of these outbox rows (masked addresses only), on a connection of its own."""
    if not outbox_ids:
        return []
    table = f"`{identifier('--state-schema', schema)}`.`ledger_recipient`"
    wanted = ", ".join(["%s"] * len(outbox_ids))
    connection = connect(dsn, autocommit=True, read_timeout=10.0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT outbox_id, recipient_index, kind, recipient_user_id, address_masked, status, message_id, "
                "error_code, ses_message_id, delivery, delivery_detail, "
                "DATE_FORMAT(delivery_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ') "
                f"FROM {table} WHERE outbox_id IN ({wanted}) ORDER BY outbox_id, recipient_index",
                tuple(outbox_ids),
            )
            return [
                RecipientEntry(
                    outbox_id=int(row[0]),
                    recipient_index=int(row[1]),
                    kind=str(row[2]),
                    recipient_user_id=None if row[3] is None else int(row[3]),
                    address=str(row[4]),
                    status=str(row[5]),
                    message_id=optional_str(row[6]),
                    error_code=optional_str(row[7]),
                    ses_message_id=optional_str(row[8]),
                    delivery=optional_str(row[9]),
                    delivery_detail=optional_str(row[10]),
                    delivery_at=optional_str(row[11]),
                )
                for row in cursor.fetchall()
            ]
    finally:
        connection.close()
