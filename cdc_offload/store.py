"""The primary: guarded suppression, the ledger, the checkpoint and the consumer lock.

One PyMySQL connection, owned here. Every write happens in one transaction that also moves the
checkpoint, and only after checking that this connection still holds the consumer lock, so an
instance that lost leadership (paused, partitioned) cannot commit anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pymysql
import pymysql.cursors

from cdc_offload.model import Checkpoint, Claimed, Position, Reason, Recorded, Resolution, Status
from cdc_offload.mysql_connection import connect
from cdc_offload.mysql_errors import describe
from cdc_offload.settings import Dsn, Settings


class StoreError(RuntimeError):
    """The primary could not be written (connection lost, lock lost, no permission)."""


class LeadershipLost(StoreError):
    """This connection no longer holds the consumer lock: another instance may be active."""


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


def schema_statements(schema: str) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4",
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`checkpoint` (
            consumer VARCHAR(64) NOT NULL PRIMARY KEY,
            binlog_file VARCHAR(255) NOT NULL,
            binlog_offset BIGINT UNSIGNED NOT NULL,
            gtid TEXT NULL,
            source_server_id BIGINT UNSIGNED NULL,
            updated_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB""",
        # The ledger never holds a subject, a body, a name or an address: ids, outcomes and times.
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`ledger` (
            outbox_id BIGINT NOT NULL PRIMARY KEY,
            userid BIGINT NOT NULL,
            status VARCHAR(16) NOT NULL,
            reason VARCHAR(32) NOT NULL,
            sink VARCHAR(8) NULL,
            message_id VARCHAR(128) NULL,
            attempts INT NOT NULL DEFAULT 0,
            binlog_file VARCHAR(255) NOT NULL,
            binlog_offset BIGINT UNSIGNED NOT NULL,
            event_time DATETIME NULL,
            handled_at DATETIME(6) NOT NULL,
            claim_mark BIGINT NULL,
            KEY ledger_user (userid),
            KEY ledger_handled (handled_at),
            KEY ledger_status (status, handled_at)
        ) ENGINE=InnoDB""",
        # Installs from before `duplicate_observed` (18 characters) had VARCHAR(16).
        f"ALTER TABLE `{schema}`.`ledger` MODIFY status VARCHAR(20) NOT NULL",
        # ...and no claim mark (claim-first dispatch): added where missing, on MySQL and MariaDB alike.
        *_add_column_if_missing(schema, "ledger", "claim_mark", "BIGINT NULL"),
        # One row per copy of an outbox row (IOMAD sends the user, the template's lists, managers
        # and supervisors a separate email each). The address is kept only as a SHA-256 of its
        # lower-cased form (support can match a known address) and a masked form for reading;
        # never the address itself. `status` is the sidecar's word (accepted / failed / not_sent);
        # the `delivery_*` columns are SES's later word (delivered, bounced, ...), from `events`.
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`ledger_recipient` (
            outbox_id BIGINT NOT NULL,
            recipient_index SMALLINT UNSIGNED NOT NULL,
            kind VARCHAR(16) NOT NULL,
            recipient_user_id BIGINT NULL,
            address_hash CHAR(64) NOT NULL,
            address_masked VARCHAR(128) NOT NULL,
            status VARCHAR(16) NOT NULL,
            message_id VARCHAR(128) NULL,
            error_code VARCHAR(64) NULL,
            ses_message_id VARCHAR(128) NULL,
            delivery VARCHAR(16) NULL,
            delivery_detail VARCHAR(64) NULL,
            delivery_at DATETIME(6) NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (outbox_id, recipient_index),
            KEY ledger_recipient_message (message_id),
            KEY ledger_recipient_ses_message (ses_message_id)
        ) ENGINE=InnoDB""",
    ]


def _add_column_if_missing(schema: str, table: str, column: str, definition: str) -> list[str]:
    # MySQL 8 has no ADD COLUMN IF NOT EXISTS: a prepared statement chosen by information_schema.
    return [
        f"SET @cdc_offload_ddl = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = '{schema}' "
        f"AND table_name = '{table}' AND column_name = '{column}') = 0, "
        f"'ALTER TABLE `{schema}`.`{table}` ADD COLUMN {column} {definition}', 'DO 0')",
        "PREPARE cdc_offload_ddl FROM @cdc_offload_ddl",
        "EXECUTE cdc_offload_ddl",
        "DEALLOCATE PREPARE cdc_offload_ddl",
    ]


def grant_statements(settings: Settings, reader_user: str, writer_user: str, host: str = "%") -> list[str]:
    moodle = settings.source.database
    writer_db = settings.writer.database
    outbox = settings.tables.outbox_table
    user = settings.tables.user_table
    sent = settings.tables.column("sent")
    schema = settings.state_schema
    return [
        f"CREATE USER IF NOT EXISTS '{reader_user}'@'{host}' IDENTIFIED BY '<reader password>';",
        # REPLICATION CLIENT is MariaDB's BINLOG MONITOR: SHOW MASTER STATUS for the first start.
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{reader_user}'@'{host}';",
        f"GRANT SELECT ON `{moodle}`.`{user}` TO '{reader_user}'@'{host}';",
        f"GRANT SELECT ON `{moodle}`.`{outbox}` TO '{reader_user}'@'{host}';",
        # Who else receives a row, read the way IOMAD's email task reads it when it sends.
        *(
            f"GRANT SELECT ON `{moodle}`.`{table}` TO '{reader_user}'@'{host}';"
            for table in settings.tables.recipient_tables()
        ),
        f"CREATE USER IF NOT EXISTS '{writer_user}'@'{host}' IDENTIFIED BY '<writer password>';",
        f"GRANT SELECT, DELETE, UPDATE (`{sent}`) ON `{writer_db}`.`{outbox}` TO '{writer_user}'@'{host}';",
        f"GRANT ALL PRIVILEGES ON `{schema}`.* TO '{writer_user}'@'{host}';",
    ]


def _placeholders(count: int, one: str = "%s") -> str:
    return ", ".join([one] * count)


class Store:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._schema = settings.state_schema
        self._outbox = f"`{settings.writer.database}`.`{settings.tables.outbox_table}`"
        self._col_id = settings.tables.column("id")
        self._col_userid = settings.tables.column("userid")
        self._col_sent = settings.tables.column("sent")
        self._connection: pymysql.Connection[Any] | None = None
        # When this connection last talked to the primary (the lease below counts from there).
        self.last_used = time.monotonic()

    # -- connection and leadership ---------------------------------------------------------
    def connect(self) -> None:
        self.close()
        try:
            self._connection = connect(self._settings.writer, autocommit=False)
            # The lock's lease: a session idle this long is closed by the server, and the consumer
            # lock with it. A healthy leader talks at least every third of it; a frozen one
            # (SIGSTOP, a paused VM, a half-open link) loses the lock, so a standby can take over.
            with self._connection.cursor() as cursor:
                cursor.execute("SET SESSION wait_timeout = %s", (max(1, round(self._settings.lease_seconds)),))
            self._commit()
        except pymysql.err.Error as error:
            self.close()
            raise StoreError(f"cannot connect to the primary {self._settings.writer}: {describe(error)}") from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    def _cursor(self) -> pymysql.cursors.Cursor:
        if self._connection is None:
            raise StoreError("not connected to the primary")
        cursor: pymysql.cursors.Cursor = self._connection.cursor()
        return cursor

    def _rollback_quietly(self) -> None:
        if self._connection is not None:
            try:
                self._connection.rollback()
            except pymysql.err.Error:
                self.close()

    def try_acquire_lock(self) -> bool:
        """Become the active consumer if nobody else is (GET_LOCK lives as long as this connection)."""
        try:
            with self._cursor() as cursor:
                cursor.execute("SELECT GET_LOCK(%s, 0)", (self._settings.lock_name,))
                row = cursor.fetchone()
            self._commit()
            return bool(row and row[0] == 1)
        except pymysql.err.Error as error:
            self.close()
            raise StoreError(f"lock request failed: {describe(error)}") from None

    def holds_lock(self) -> bool:
        try:
            with self._cursor() as cursor:
                cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self._settings.lock_name,))
                row = cursor.fetchone()
            self._commit()
            return bool(row and row[0] == 1)
        except pymysql.err.Error:
            self.close()
            return False

    def ensure_leader(self) -> None:
        """Raise `LeadershipLost` unless this connection holds the consumer lock right now."""
        try:
            with self._cursor() as cursor:
                self._check_lock(cursor)
            self._commit()
        except LeadershipLost:
            self._rollback_quietly()
            raise
        except pymysql.err.Error as error:
            self.close()
            raise StoreError(f"lock check failed: {describe(error)}") from None

    def _commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()
        self.last_used = time.monotonic()

    # -- schema ------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        with self._cursor() as cursor:
            for statement in schema_statements(self._schema):
                cursor.execute(statement)
        self._commit()

    def schema_present(self) -> bool:
        try:
            with self._cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name IN ('checkpoint', 'ledger')",
                    (self._schema,),
                )
                row = cursor.fetchone()
            self._commit()
            return bool(row and row[0] == 2)
        except pymysql.err.Error:
            self._rollback_quietly()
            return False

    # -- checkpoint --------------------------------------------------------------------------
    def load_checkpoint(self) -> Checkpoint | None:
        try:
            with self._cursor() as cursor:
                cursor.execute(
                    f"SELECT binlog_file, binlog_offset, gtid, source_server_id FROM `{self._schema}`.`checkpoint` "
                    "WHERE consumer = %s",
                    (self._settings.consumer,),
                )
                row = cursor.fetchone()
            self._commit()
        except pymysql.err.Error as error:
            self._rollback_quietly()
            raise StoreError(f"cannot read the checkpoint: {describe(error)}") from None
        if row is None:
            return None
        return Checkpoint(
            Position(str(row[0]), int(row[1])), gtid=row[2] or None, source_server_id=_optional_str(row[3])
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Set the position outside the pipeline (`position set`); the caller holds the lock."""
        try:
            with self._cursor() as cursor:
                self._check_lock(cursor)
                self._write_checkpoint(cursor, checkpoint)
            self._commit()
        except pymysql.err.Error as error:
            self._rollback_quietly()
            raise StoreError(f"cannot write the checkpoint: {describe(error)}") from None

    def _write_checkpoint(self, cursor: pymysql.cursors.Cursor, checkpoint: Checkpoint) -> None:
        cursor.execute(
            f"INSERT INTO `{self._schema}`.`checkpoint` "
            "(consumer, binlog_file, binlog_offset, gtid, source_server_id, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE "
            "binlog_file = VALUES(binlog_file), binlog_offset = VALUES(binlog_offset), gtid = VALUES(gtid), "
            "source_server_id = VALUES(source_server_id), updated_at = VALUES(updated_at)",
            (
                self._settings.consumer,
                checkpoint.position.file,
                checkpoint.position.offset,
                checkpoint.gtid,
                checkpoint.source_server_id,
            ),
        )

    def _check_lock(self, cursor: pymysql.cursors.Cursor) -> None:
        cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self._settings.lock_name,))
        row = cursor.fetchone()
        if not row or row[0] != 1:
            raise LeadershipLost("this instance no longer holds the consumer lock; another may be active")

    # -- ledger ------------------------------------------------------------------------------
    def handled(self, outbox_ids: Sequence[int]) -> set[int]:
        """Outbox ids the ledger has a final word on: a replay or restart must not send them again.
        (A `claimed` row is not final: `recorded` says what to do with it.)"""
        return {i for i, entry in self.recorded(outbox_ids).items() if entry.status != Status.CLAIMED}

    def recorded(self, outbox_ids: Sequence[int]) -> dict[int, Recorded]:
        """What the ledger holds for these rows."""
        if not outbox_ids:
            return {}
        try:
            with self._cursor() as cursor:
                wanted = _placeholders(len(outbox_ids))
                cursor.execute(
                    "SELECT outbox_id, status, claim_mark, TIMESTAMPDIFF(MICROSECOND, handled_at, UTC_TIMESTAMP(6)) "
                    f"FROM `{self._schema}`.`ledger` WHERE outbox_id IN ({wanted})",
                    tuple(outbox_ids),
                )
                found = {
                    int(row[0]): Recorded(str(row[1]), _optional_int(row[2]), int(row[3] or 0) / 1e6)
                    for row in cursor.fetchall()
                }
            self._commit()
            return found
        except pymysql.err.Error as error:
            self._rollback_quietly()
            raise StoreError(f"cannot read the ledger: {describe(error)}") from None

    def claim(self, claims: Sequence[Resolution], task_lock: str | None, wait: float) -> Claimed | None:
        """Take rows from the outbox before AWS sees them (claim-first): under the lock IOMAD's
        email task runs under, so the task is never between loading a row and marking it, each
        row still unsent is marked with our claim (`sent` = the claim time) and recorded `claimed`
        in one transaction. None when the task holds its lock past `wait`: nothing was claimed."""
        mark = int(time.time())
        try:
            with self._cursor() as cursor:
                if task_lock is not None:
                    cursor.execute("SELECT GET_LOCK(%s, %s)", (task_lock, wait))
                    row = cursor.fetchone()
                    if not row or row[0] != 1:
                        self._commit()
                        return None
                held_from = time.perf_counter()
                try:
                    self._check_lock(cursor)
                    present = self._lock_unsent(cursor, claims)
                    if present:
                        cursor.execute(
                            f"UPDATE {self._outbox} SET `{self._col_sent}` = %s "
                            f"WHERE `{self._col_id}` IN ({_placeholders(len(present))}) AND `{self._col_sent}` IS NULL",
                            [mark, *present],
                        )
                    claimed = [
                        replace(r, status=Status.CLAIMED, claim_mark=mark) for r in claims if r.outbox_id in present
                    ]
                    self._record(cursor, claimed)
                    self._commit()
                except BaseException:
                    # Never half a claim: rows marked ours without their `claimed` ledger rows would be
                    # hidden from Moodle and unknown to us. Undone before the task's lock is let go.
                    self._rollback_quietly()
                    raise
                finally:
                    if task_lock is not None and self._connection is not None:
                        cursor.execute("SELECT RELEASE_LOCK(%s)", (task_lock,))
                        self._connection.commit()
                return Claimed(mark, frozenset(present), time.perf_counter() - held_from)
        except LeadershipLost:
            self._rollback_quietly()
            raise
        except pymysql.err.Error as error:
            # The server releases a named lock with the session: closing cannot leave the task locked out.
            self._rollback_quietly()
            self.close()
            raise StoreError(f"claim on the primary failed: {describe(error)}") from None

    def _lock_unsent(self, cursor: pymysql.cursors.Cursor, rows: Sequence[Resolution]) -> set[int]:
        """Exact id AND user AND still unsent, locked: never `WHERE userid = X` alone (a user can
        have other queued mail), never a row Moodle's cron already sent. An IN list on the primary
        key: one OR-ed condition per row took ~0.15 ms each."""
        if not rows:
            return set()
        expected = {r.outbox_id: r.userid for r in rows}
        cursor.execute(
            f"SELECT `{self._col_id}`, `{self._col_userid}` FROM {self._outbox} "
            f"WHERE `{self._col_id}` IN ({_placeholders(len(expected))}) AND `{self._col_sent}` IS NULL FOR UPDATE",
            list(expected),
        )
        return {int(row[0]) for row in cursor.fetchall() if expected.get(int(row[0])) == int(row[1])}

    def commit(self, resolutions: Sequence[Resolution], checkpoint: Checkpoint | None) -> list[Resolution]:
        """Settle claimed rows (AWS accepted: delete, or keep marked sent; otherwise restore them for
        Moodle), record every resolution and move the checkpoint: all or nothing.

        Returns the resolutions as recorded (an accepted row someone else changed is `raced`)."""
        try:
            with self._cursor() as cursor:
                self._check_lock(cursor)
                final = self._settle(cursor, resolutions)
                self._record(cursor, final)
                self._record_recipients(cursor, final)
                if checkpoint is not None:
                    self._write_checkpoint(cursor, checkpoint)
            self._commit()
            return final
        except LeadershipLost:
            self._rollback_quietly()
            raise
        except pymysql.err.Error as error:
            self._rollback_quietly()
            self.close()
            raise StoreError(f"commit on the primary failed: {describe(error)}") from None

    def _settle(self, cursor: pymysql.cursors.Cursor, resolutions: Sequence[Resolution]) -> list[Resolution]:
        marks: dict[tuple[int, bool], list[int]] = {}
        for r in resolutions:
            if r.claim_mark is not None:
                marks.setdefault((r.claim_mark, r.status is Status.OFFLOADED), []).append(r.outbox_id)
        remarked: set[int] = set()
        for (mark, accepted), ids in marks.items():
            # Guarded by our own mark: a row someone re-marked or removed is left as it is.
            guarded = f"`{self._col_id}` IN ({_placeholders(len(ids))}) AND `{self._col_sent}` = %s"
            if not accepted:
                cursor.execute(f"UPDATE {self._outbox} SET `{self._col_sent}` = NULL WHERE {guarded}", [*ids, mark])
                continue
            if self._settings.suppress == "delete":
                cursor.execute(f"DELETE FROM {self._outbox} WHERE {guarded}", [*ids, mark])
                if cursor.rowcount == len(ids):
                    continue
            # Rows still there with another `sent` than our mark were marked by IOMAD's task after
            # it had loaded them before our claim (possible only without its lock): it sent them too.
            # (mark-sent: the claim already wrote `sent`; the row stays exactly as IOMAD marks one.)
            cursor.execute(
                f"SELECT `{self._col_id}` FROM {self._outbox} WHERE `{self._col_id}` IN ({_placeholders(len(ids))}) "
                f"AND NOT `{self._col_sent}` <=> %s",
                [*ids, mark],
            )
            remarked.update(int(row[0]) for row in cursor.fetchall())
        return [
            replace(r, status=Status.DUPLICATE_OBSERVED, reason=Reason.SENT_BY_MOODLE)
            if r.outbox_id in remarked and r.status is Status.OFFLOADED
            else r
            for r in resolutions
        ]

    def _record(self, cursor: pymysql.cursors.Cursor, resolutions: Iterable[Resolution]) -> None:
        handled_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
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
            f"INSERT INTO `{self._schema}`.`ledger` (outbox_id, userid, status, reason, sink, message_id, attempts, "
            "binlog_file, binlog_offset, event_time, handled_at, claim_mark) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON DUPLICATE KEY UPDATE {settle}, status = IF(status = 'claimed', VALUES(status), status)",
            rows,
        )

    def _record_recipients(self, cursor: pymysql.cursors.Cursor, resolutions: Iterable[Resolution]) -> None:
        updated_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
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
                f"INSERT INTO `{self._schema}`.`ledger_recipient` (outbox_id, recipient_index, kind, "
                "recipient_user_id, address_hash, address_masked, status, message_id, error_code, updated_at) "
                # `deliver` and `events` may have made the row first (they know only the tags): the
                # sidecar's word fills it in; SES's columns (ses_message_id, delivery*) are theirs.
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE kind = VALUES(kind), "
                "recipient_user_id = VALUES(recipient_user_id), address_hash = VALUES(address_hash), "
                "address_masked = VALUES(address_masked), status = VALUES(status), message_id = VALUES(message_id), "
                "error_code = VALUES(error_code), updated_at = VALUES(updated_at)",
                rows,
            )

    def orphaned_claims(self, before: Checkpoint) -> list[Resolution]:
        """`claimed` rows the binlog will not bring back (recorded before the checkpoint, e.g. after
        `position set`): the caller restores them for Moodle rather than forget them."""
        try:
            with self._cursor() as cursor:
                cursor.execute(
                    "SELECT outbox_id, userid, binlog_file, binlog_offset, UNIX_TIMESTAMP(event_time), claim_mark "
                    f"FROM `{self._schema}`.`ledger` WHERE status = 'claimed' "
                    "AND (binlog_file < %s OR (binlog_file = %s AND binlog_offset < %s))",
                    (before.position.file, before.position.file, before.position.offset),
                )
                rows = cursor.fetchall()
            self._commit()
        except pymysql.err.Error as error:
            self._rollback_quietly()
            raise StoreError(f"cannot read the ledger: {describe(error)}") from None
        return [
            Resolution(
                int(row[0]),
                int(row[1]),
                Status.UNCERTAIN,
                Reason.NO_ANSWER,
                Position(str(row[2]), int(row[3])),
                int(row[4] or 0),
                claim_mark=_optional_int(row[5]),
            )
            for row in rows
        ]

    def note_duplicates(self, outbox_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Rows we delivered that IOMAD's task marked sent again (it sent them too): recorded as
        `duplicate_observed`. Returns the ids the ledger had as ours, and those still `claimed`
        (AWS has not answered yet: the caller asks again once they are settled)."""
        if not outbox_ids:
            return [], []
        try:
            with self._cursor() as cursor:
                self._check_lock(cursor)
                wanted = _placeholders(len(outbox_ids))
                cursor.execute(
                    f"SELECT outbox_id, status FROM `{self._schema}`.`ledger` WHERE outbox_id IN ({wanted}) "
                    "AND status IN ('offloaded', 'claimed') FOR UPDATE",
                    tuple(outbox_ids),
                )
                found = cursor.fetchall()
                ours = sorted(int(row[0]) for row in found if row[1] == Status.OFFLOADED)
                pending = sorted(int(row[0]) for row in found if row[1] == Status.CLAIMED)
                if ours:
                    cursor.execute(
                        f"UPDATE `{self._schema}`.`ledger` SET status = 'duplicate_observed', reason = %s "
                        f"WHERE outbox_id IN ({_placeholders(len(ours))})",
                        (Reason.SENT_BY_MOODLE.value, *ours),
                    )
            self._commit()
            return ours, pending
        except LeadershipLost:
            self._rollback_quietly()
            raise
        except pymysql.err.Error as error:
            self._rollback_quietly()
            self.close()
            raise StoreError(f"cannot record duplicates: {describe(error)}") from None


def address_hash(address: str) -> str:
    """What the ledger keeps of an address: support can hash a known address and find it."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def masked_address(address: str) -> str:
    """`j***@example.org`: enough to tell copies apart on a screen, not enough to mail anyone."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local[:1]}***@{domain}"[:128] if local else "***"


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
                    sink=_optional_str(row[4]),
                    message_id=_optional_str(row[5]),
                    attempts=int(row[6]),
                    binlog_position=f"{row[7]}:{row[8]}",
                    event_time=_optional_str(row[9]),
                    handled_at=str(row[10]),
                )
                for row in rows
            ]
    finally:
        connection.close()


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
