"""Where transactions end, for every reader: the one owner of the boundary rule, the GTID state
at each boundary, and how a failed read is told to the loop.

A reader feeds `TransactionFramer` the events that open and close transactions (GTID, BEGIN,
COMMIT/XID, a DDL statement, ROTATE) and yields the `Commit`s it returns; every row it yields
carries `framer.boundary`, the last commit before it (the position a restart would resume from).
Only commit boundaries become checkpoints: resuming inside a transaction, after its table-map,
would silently drop its rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymysql

from cdc_offload import tls
from cdc_offload.errors import SourceError
from cdc_offload.model import Checkpoint, Commit, Position, SourceItem
from cdc_offload.settings import Settings
from cdc_offload.source.binlog.framing import ConnectionClosed
from cdc_offload.source.binlog.protocol import ServerError
from cdc_offload.source.gtid import GtidState, MysqlGtidSet, gtid_state
from cdc_offload.source.server_facts import (
    ER_MASTER_FATAL_ERROR_READING_BINLOG,
    ER_SLAVE_SAME_ID,
    cannot_resume,
    same_id_refused,
)

# PyMySQL's "server has gone away" / "lost connection during query".
_CONNECTION_LOST_CODES = (2006, 2013)


class TransactionFramer:
    """The boundary state of one stream, from the checkpoint it started at. Called only at
    transaction-level events (a few per transaction), never per row."""

    __slots__ = ("_gtids", "_server", "boundary", "in_transaction")

    def __init__(self, start: Checkpoint, *, mariadb: bool, server_id: int) -> None:
        self.boundary = start
        self.in_transaction = False
        self._gtids: GtidState | MysqlGtidSet = gtid_state(start.gtid, mariadb)
        self._server = str(server_id)

    def mariadb_gtid(self, domain: int, gtid: str, standalone: bool) -> None:
        """MariaDB's GTID event opens every transaction; a standalone one (DDL) has no BEGIN and
        ends with its one statement."""
        self._gtids.note(domain, gtid)
        self.in_transaction = not standalone

    def mysql_gtid(self, sid: bytes, gno: int) -> None:
        """MySQL's GTID event; its transaction opens with the BEGIN that follows."""
        self._gtids.note_event(sid, gno)

    def commit(self, file: str, offset: int, timestamp: int) -> Commit:
        """An XID (or COMMIT) ending at `file:offset`: the next boundary."""
        self.in_transaction = False
        boundary = self.boundary = Checkpoint(Position(file, offset), self._gtids.render(), self._server)
        return Commit(boundary, timestamp)

    def query(self, *, begin: bool, commit: bool, file: str, offset: int, timestamp: int) -> Commit | None:
        """A statement: BEGIN opens a transaction; COMMIT, or any statement outside one (DDL),
        is a boundary."""
        if begin:
            self.in_transaction = True
            return None
        if commit or not self.in_transaction:
            return self.commit(file, offset, timestamp)
        return None

    def rotate(self, file: str, offset: int) -> None:
        """A new binlog file: between transactions its start is the boundary (the old file's end
        names no place a restart could use)."""
        if not self.in_transaction:
            self.boundary = Checkpoint(Position(file, offset), self._gtids.render(), self._server)

    def past(self, end: Position) -> bool:
        """A bounded read (replay) is done once a boundary reaches `end`, never mid-transaction."""
        return not self.in_transaction and self.boundary.position >= end


# What a read can fail with, whichever reader: `read_failed` says what each means to the loop.
READ_ERRORS: tuple[type[BaseException], ...] = (ServerError, ConnectionClosed, pymysql.err.Error, OSError)


def reading(items: Iterator[SourceItem], settings: Settings, start: Checkpoint) -> Iterator[SourceItem]:
    """A reader's items, with a failed read told to the loop as `read_failed` says; our own
    `SourceError`s (refusals, lost positions) pass as raised."""
    try:
        yield from items
    except SourceError:
        raise
    except READ_ERRORS as error:
        raise read_failed(error, settings, start) from None


def read_failed(error: BaseException, settings: Settings, start: Checkpoint) -> SourceError:
    """The `SourceError` the loop sees for a failed read (a `PositionLost` where resuming from
    `start` is impossible). Never the error's own text unless it is the server's, which names
    files and positions, not rows."""
    if isinstance(error, ServerError):
        return _server_error(error.code, error.message, settings, start)
    if isinstance(error, tls.TlsError):
        return SourceError(f"binlog connection refused: {error.message}")
    if isinstance(error, pymysql.err.OperationalError):
        code = error.args[0] if error.args else 0
        message = str(error.args[1]) if len(error.args) > 1 else str(error)
        return _server_error(code, message, settings, start)
    if isinstance(error, (ConnectionClosed, TimeoutError)):
        return SourceError("the binlog connection was lost")
    return SourceError(f"binlog read failed: {type(error).__name__}")


def _server_error(code: int, message: str, settings: Settings, start: Checkpoint) -> SourceError:
    if code == ER_MASTER_FATAL_ERROR_READING_BINLOG:
        return cannot_resume(settings, start, message)
    if code == ER_SLAVE_SAME_ID:
        return same_id_refused(settings)
    if code in _CONNECTION_LOST_CODES:
        return SourceError("the binlog connection was lost")
    return SourceError(f"binlog read failed: MySQL error {code}")
