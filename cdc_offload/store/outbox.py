"""Moodle's outbox as we change it: claim rows before AWS sees them, then settle each claim
(accepted: delete the row, or leave it marked sent; otherwise restore it for Moodle).

Every statement is guarded by exact id AND user AND `sent`: never `WHERE userid = X` alone (a user
can have other queued mail), never a row Moodle's cron already sent, never a row someone re-marked
after our claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cdc_offload.model import Reason, Resolution, Status
from cdc_offload.settings import Settings
from cdc_offload.store.sql import Cursor, placeholders


class Outbox:
    def __init__(self, table: str, id_column: str, userid_column: str, sent_column: str, delete: bool) -> None:
        self._table = table
        self._id = f"`{id_column}`"
        self._userid = f"`{userid_column}`"
        self._sent = f"`{sent_column}`"
        # `suppress = delete`: an accepted row is deleted; otherwise it stays marked sent by our claim.
        self._delete = delete

    @classmethod
    def of(cls, settings: Settings) -> Outbox:
        columns = settings.tables.column
        return cls(
            f"`{settings.writer.database}`.`{settings.tables.outbox_table}`",
            columns("id"),
            columns("userid"),
            columns("sent"),
            settings.suppress == "delete",
        )

    def claim(self, cursor: Cursor, rows: Sequence[Resolution], mark: int) -> set[int]:
        """Mark the rows still unsent for the same user with `mark`; returns their ids."""
        present = self._lock_unsent(cursor, rows)
        if present:
            cursor.execute(
                f"UPDATE {self._table} SET {self._sent} = %s "
                f"WHERE {self._id} IN ({placeholders(len(present))}) AND {self._sent} IS NULL",
                [mark, *present],
            )
        return present

    def _lock_unsent(self, cursor: Cursor, rows: Sequence[Resolution]) -> set[int]:
        """Exact id AND user AND still unsent, locked. An IN list on the primary key: one OR-ed
        condition per row took ~0.15 ms each."""
        if not rows:
            return set()
        expected = {r.outbox_id: r.userid for r in rows}
        cursor.execute(
            f"SELECT {self._id}, {self._userid} FROM {self._table} "
            f"WHERE {self._id} IN ({placeholders(len(expected))}) AND {self._sent} IS NULL FOR UPDATE",
            list(expected),
        )
        return {int(row[0]) for row in cursor.fetchall() if expected.get(int(row[0])) == int(row[1])}

    def settle(self, cursor: Cursor, resolutions: Sequence[Resolution]) -> list[Resolution]:
        """Settle each claimed row; returns the resolutions as they stand (an accepted row that
        IOMAD's task marked sent after our claim becomes `duplicate_observed`)."""
        marks: dict[tuple[int, bool], list[int]] = {}
        for r in resolutions:
            if r.claim_mark is not None:
                marks.setdefault((r.claim_mark, r.status is Status.OFFLOADED), []).append(r.outbox_id)
        remarked: set[int] = set()
        for (mark, accepted), ids in marks.items():
            # Guarded by our own mark: a row someone re-marked or removed is left as it is.
            guarded = f"{self._id} IN ({placeholders(len(ids))}) AND {self._sent} = %s"
            if not accepted:
                cursor.execute(f"UPDATE {self._table} SET {self._sent} = NULL WHERE {guarded}", [*ids, mark])
                continue
            if self._delete:
                cursor.execute(f"DELETE FROM {self._table} WHERE {guarded}", [*ids, mark])
                if cursor.rowcount == len(ids):
                    continue
            # Rows still there with another `sent` than our mark were marked by IOMAD's task after
            # it had loaded them before our claim (possible only without its lock): it sent them too.
            # (mark-sent: the claim already wrote `sent`; the row stays exactly as IOMAD marks one.)
            cursor.execute(
                f"SELECT {self._id} FROM {self._table} WHERE {self._id} IN ({placeholders(len(ids))}) "
                f"AND NOT {self._sent} <=> %s",
                [*ids, mark],
            )
            remarked.update(int(row[0]) for row in cursor.fetchall())
        return [
            replace(r, status=Status.DUPLICATE_OBSERVED, reason=Reason.SENT_BY_MOODLE)
            if r.outbox_id in remarked and r.status is Status.OFFLOADED
            else r
            for r in resolutions
        ]


def claimed(rows: Sequence[Resolution], present: set[int], mark: int) -> list[Resolution]:
    """The ledger rows of a claim: those the outbox still had, `claimed` under `mark`."""
    return [replace(r, status=Status.CLAIMED, claim_mark=mark) for r in rows if r.outbox_id in present]
