"""The ledger: the sidecar's word on every outbox row it handled (one row each), and on every
copy of it (`ledger_recipient`). Ids, outcomes and times only: never a subject, a body, a name or
an address (an address is kept hashed and masked)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

from cdc_offload.model import Checkpoint, Position, Reason, Recorded, Resolution, Status
from cdc_offload.store.sql import Cursor, optional_int, placeholders, utc_now


class Ledger:
    def __init__(self, schema: str) -> None:
        self._ledger = f"`{schema}`.`ledger`"
        self._recipients = f"`{schema}`.`ledger_recipient`"

    def recorded(self, cursor: Cursor, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        if not outbox_ids:
            return {}
        cursor.execute(
            "SELECT outbox_id, status, claim_mark, TIMESTAMPDIFF(MICROSECOND, handled_at, UTC_TIMESTAMP(6)) "
            f"FROM {self._ledger} WHERE outbox_id IN ({placeholders(len(outbox_ids))})",
            tuple(outbox_ids),
        )
        return {
            int(row[0]): Recorded(str(row[1]), optional_int(row[2]), int(row[3] or 0) / 1e6)
            for row in cursor.fetchall()
        }

    def record(self, cursor: Cursor, resolutions: Iterable[Resolution]) -> None:
        handled_at = utc_now()
        rows = [
            (
                r.outbox_id,
                r.userid,
                r.status.value,
                r.reason.value,
                r.sink,
                r.message_id,
                r.attempts,
                r.position.file,
                r.position.offset,
                dt.datetime.fromtimestamp(r.event_time, dt.UTC).replace(tzinfo=None),
                handled_at,
                r.claim_mark,
            )
            for r in resolutions
        ]
        if not rows:
            return
        # First final word wins: a replay never rewrites what was recorded; only a `claimed` row
        # takes its outcome. Plain %s values only, so PyMySQL sends one multi-row INSERT (with SQL
        # functions in VALUES it sent one per row).
        settle = ", ".join(
            f"{column} = IF(status = 'claimed', VALUES({column}), {column})"
            for column in ("reason", "sink", "message_id", "attempts", "handled_at", "claim_mark")
        )
        cursor.executemany(
            f"INSERT INTO {self._ledger} (outbox_id, userid, status, reason, sink, message_id, attempts, "
            "binlog_file, binlog_offset, event_time, handled_at, claim_mark) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON DUPLICATE KEY UPDATE {settle}, status = IF(status = 'claimed', VALUES(status), status)",
            rows,
        )

    def record_recipients(self, cursor: Cursor, resolutions: Iterable[Resolution]) -> None:
        updated_at = utc_now()
        rows = [
            (
                r.outbox_id,
                outcome.recipient.index,
                outcome.recipient.kind.value,
                outcome.recipient.user_id,
                address_hash(outcome.recipient.address),
                masked_address(outcome.recipient.address),
                outcome.status.value,
                outcome.message_id,
                outcome.error_code,
                updated_at,
            )
            for r in resolutions
            for outcome in r.recipients
        ]
        if rows:
            cursor.executemany(
                f"INSERT INTO {self._recipients} (outbox_id, recipient_index, kind, "
                "recipient_user_id, address_hash, address_masked, status, message_id, error_code, updated_at) "
                # `deliver` and `events` may have made the row first (they know only the tags): the
                # sidecar's word fills it in; SES's columns (ses_message_id, delivery*) are theirs.
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE kind = VALUES(kind), "
                "recipient_user_id = VALUES(recipient_user_id), address_hash = VALUES(address_hash), "
                "address_masked = VALUES(address_masked), status = VALUES(status), message_id = VALUES(message_id), "
                "error_code = VALUES(error_code), updated_at = VALUES(updated_at)",
                rows,
            )

    def claimed_before(self, cursor: Cursor, before: Checkpoint) -> list[Resolution]:
        """`claimed` rows recorded before `before`, as rows AWS never answered for."""
        cursor.execute(
            "SELECT outbox_id, userid, binlog_file, binlog_offset, UNIX_TIMESTAMP(event_time), claim_mark "
            f"FROM {self._ledger} WHERE status = 'claimed' "
            "AND (binlog_file < %s OR (binlog_file = %s AND binlog_offset < %s))",
            (before.position.file, before.position.file, before.position.offset),
        )
        return [
            Resolution(
                int(row[0]),
                int(row[1]),
                Status.UNCERTAIN,
                Reason.NO_ANSWER,
                Position(str(row[2]), int(row[3])),
                int(row[4] or 0),
                claim_mark=optional_int(row[5]),
            )
            for row in cursor.fetchall()
        ]

    def note_duplicates(self, cursor: Cursor, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Marks ours (`offloaded`) as `duplicate_observed`; returns them, and those still `claimed`."""
        cursor.execute(
            f"SELECT outbox_id, status FROM {self._ledger} WHERE outbox_id IN ({placeholders(len(outbox_ids))}) "
            "AND status IN ('offloaded', 'claimed') FOR UPDATE",
            tuple(outbox_ids),
        )
        found = cursor.fetchall()
        ours = sorted(int(row[0]) for row in found if row[1] == Status.OFFLOADED)
        pending = sorted(int(row[0]) for row in found if row[1] == Status.CLAIMED)
        if ours:
            cursor.execute(
                f"UPDATE {self._ledger} SET status = 'duplicate_observed', reason = %s "
                f"WHERE outbox_id IN ({placeholders(len(ours))})",
                (Reason.SENT_BY_MOODLE.value, *ours),
            )
        return ours, pending


def address_hash(address: str) -> str:
    """What the ledger keeps of an address: support can hash a known address and find it."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def masked_address(address: str) -> str:
    """`j***@example.org`: enough to tell copies apart on a screen, not enough to mail anyone."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local[:1]}***@{domain}"[:128] if local else "***"
