"""The store's parts without a server: the lease on a fake clock (no sleep), the consumer lock's
check, the outbox's guards, the one transaction's error handling, and the error describer's
promise that no server text (which can quote an outbox body and its password) gets out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pymysql
import pytest

from cdc_offload.model import Checkpoint, Position, Reason, Resolution, Status
from cdc_offload.mysql_errors import describe
from cdc_offload.replaying import DryRun, KeepLivePosition
from cdc_offload.settings import Settings, SinkSettings, parse_dsn
from cdc_offload.store import LeadershipLost, Store, StoreError
from cdc_offload.store.checkpoint import CheckpointTable
from cdc_offload.store.connection import Link
from cdc_offload.store.lease import ConsumerLock, Lease
from cdc_offload.store.ledger import Ledger
from cdc_offload.store.outbox import Outbox
from cdc_offload.store.protocols import LeaderStore, SessionStore
from cdc_offload.tls import TlsError
from tests.support.loop_fakes import FakeClock
from tests.support.memory_store import MemoryStore

SECRET = "Tmp#pass1&"


def settings(**overrides: Any) -> Settings:
    return Settings(
        source=parse_dsn("--source-dsn", "mysql://reader@replica:3306/moodle"),
        writer=parse_dsn("--writer-dsn", "mysql://writer@primary:3306/moodle"),
        sink=SinkSettings(queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/mail"),
        **overrides,
    )


class FakeCursor:
    """Records statements; answers each `fetchone`/`fetchall` from a script; raises on request."""

    def __init__(self, rows: Sequence[Any] = (), fail: BaseException | None = None, rowcount: int = 0) -> None:
        self.statements: list[tuple[str, Any]] = []
        self._rows = list(rows)
        self._fail = fail
        self.rowcount = rowcount

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def execute(self, sql: str, params: Any = None) -> int:
        if self._fail is not None:
            raise self._fail
        self.statements.append((sql, params))
        return 0

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> Any:
        rows, self._rows = self._rows, []
        return rows


class FakeConnection:
    def __init__(self, cursor: FakeCursor) -> None:
        self._cursor = cursor
        self.open = True
        self.commits = self.rollbacks = 0

    def cursor(self) -> FakeCursor:
        return self._cursor

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.open = False


def resolution(outbox_id: int, status: Status = Status.OFFLOADED, mark: int | None = 7) -> Resolution:
    return Resolution(outbox_id, 10 + outbox_id, status, Reason.NONE, Position("binlog.000001", 4), 0, claim_mark=mark)


# -- the lease ---------------------------------------------------------------------------------
def test_the_lease_is_renewed_after_a_third_and_expires_after_the_whole() -> None:
    clock = FakeClock()
    lease = Lease(30.0, clock)
    clock.advance(9.9)
    assert not lease.renewal_due()
    clock.advance(0.1)
    assert lease.renewal_due() and not lease.expired()
    lease.used()
    assert not lease.renewal_due(), "talking renews it"
    clock.advance(30.0)
    assert lease.expired()


def test_the_servers_timeout_is_the_lease_in_whole_seconds_and_never_zero() -> None:
    assert Lease(29.6, FakeClock()).server_timeout == 30
    assert Lease(0.2, FakeClock()).server_timeout == 1


def test_keep_alive_asks_the_primary_only_once_a_third_of_the_lease_has_passed() -> None:
    clock = FakeClock()
    store = Store(settings(lock_lease=30.0), clock)
    checks: list[float] = []

    def ensure_leader() -> None:
        checks.append(clock.monotonic())

    store.ensure_leader = ensure_leader  # type: ignore[method-assign]
    clock.advance(9.0)
    store.keep_alive()
    assert checks == []
    clock.advance(1.0)
    store.keep_alive()
    assert checks == [clock.monotonic()]


def test_a_lease_left_to_lapse_loses_the_lock_and_nothing_more_is_written() -> None:
    clock = FakeClock()
    store: LeaderStore = MemoryStore(clock, lease_seconds=30.0)
    clock.advance(10.0)
    store.keep_alive()
    clock.advance(29.0)
    store.ensure_leader()
    clock.advance(31.0)
    with pytest.raises(LeadershipLost):
        store.keep_alive()
    with pytest.raises(LeadershipLost):
        store.commit([], Checkpoint(Position("binlog.000002", 4)))
    assert store.load_checkpoint() is None


# -- the consumer lock and the one transaction ---------------------------------------------------
@pytest.mark.parametrize("row", [(0,), (None,), None])
def test_a_connection_that_does_not_hold_the_lock_is_told_so(row: Any) -> None:
    with pytest.raises(LeadershipLost):
        ConsumerLock("cdc_offload.x.default").check(FakeCursor([row]))  # type: ignore[arg-type]
    ConsumerLock("cdc_offload.x.default").check(FakeCursor([(1,)]))  # type: ignore[arg-type]


def link_with(cursor: FakeCursor) -> tuple[Link, FakeConnection, Lease]:
    clock = FakeClock()
    lease = Lease(30.0, clock)
    link = Link(settings().writer, lease)
    connection = FakeConnection(cursor)
    link._connection = connection  # type: ignore[assignment]
    clock.advance(20.0)
    return link, connection, lease


def test_a_committed_transaction_renews_the_lease() -> None:
    link, connection, lease = link_with(FakeCursor())
    with link.transaction("x") as cursor:
        cursor.execute("DO 0")
    assert connection.commits == 1 and not lease.renewal_due()


def test_a_failed_write_is_rolled_back_closed_and_named_by_code_only() -> None:
    error = pymysql.err.OperationalError(1213, f"Deadlock found; body was 'password {SECRET}'")
    link, connection, lease = link_with(FakeCursor(fail=error))
    with pytest.raises(StoreError) as raised, link.transaction("commit on the primary failed") as cursor:
        cursor.execute("UPDATE x")
    assert str(raised.value) == "commit on the primary failed: MySQL error 1213"
    # `from None`: a traceback never prints the server's text either.
    assert SECRET not in repr(raised.value) and raised.value.__suppress_context__
    assert connection.rollbacks == 1 and not connection.open and not link.connected
    assert lease.renewal_due(), "a failed transaction is not a renewal"


def test_a_failed_read_is_rolled_back_but_the_connection_kept() -> None:
    link, connection, _ = link_with(FakeCursor(fail=pymysql.err.ProgrammingError(1146, "no table")))
    with pytest.raises(StoreError), link.transaction("cannot read the ledger", close_on_error=False) as cursor:
        cursor.execute("SELECT 1")
    assert connection.rollbacks == 1 and link.connected


def test_leadership_lost_is_rolled_back_and_raised_as_it_is() -> None:
    link, connection, _ = link_with(FakeCursor([(0,)]))
    with pytest.raises(LeadershipLost), link.transaction("commit on the primary failed") as cursor:
        ConsumerLock("l").check(cursor)
    assert connection.rollbacks == 1 and connection.commits == 0 and link.connected


def test_a_store_not_connected_says_so() -> None:
    with pytest.raises(StoreError, match="not connected"):
        Store(settings()).load_checkpoint()


# -- checkpoint, ledger, outbox ----------------------------------------------------------------
def test_no_checkpoint_row_is_no_checkpoint_and_one_row_is_read_back() -> None:
    table = CheckpointTable("cdc", "default")
    assert table.load(FakeCursor()) is None  # type: ignore[arg-type]
    found = table.load(FakeCursor([("binlog.000003", 120, "0-1-5", 1)]))  # type: ignore[arg-type]
    assert found == Checkpoint(Position("binlog.000003", 120), gtid="0-1-5", source_server_id="1")


def test_the_ledger_asks_nothing_for_no_rows() -> None:
    cursor = FakeCursor()
    assert Ledger("cdc").recorded(cursor, []) == {}  # type: ignore[arg-type]
    Ledger("cdc").record(cursor, [])  # type: ignore[arg-type]
    assert cursor.statements == []


def test_a_claim_takes_only_rows_still_unsent_for_the_same_user() -> None:
    outbox = Outbox.of(settings())
    # Row 1 is unsent for its user; row 2's user differs (the id was reused for someone else).
    cursor = FakeCursor([(1, 11), (2, 99)])
    present = outbox.claim(cursor, [resolution(1), resolution(2), resolution(3)], 7)  # type: ignore[arg-type]
    assert present == {1}
    select, update = cursor.statements
    assert "IS NULL FOR UPDATE" in select[0] and update[1] == [7, 1]


def test_settling_is_guarded_by_our_mark_and_an_accepted_row_remarked_since_is_a_duplicate() -> None:
    outbox = Outbox.of(settings())
    # Delete of rows 1 and 2 removed only one; the other now carries IOMAD's mark.
    cursor = FakeCursor([(2,)], rowcount=1)
    final = outbox.settle(cursor, [resolution(1), resolution(2), resolution(3, Status.FALLBACK)])  # type: ignore[arg-type]
    assert [r.status for r in final] == [Status.OFFLOADED, Status.DUPLICATE_OBSERVED, Status.FALLBACK]
    assert final[1].reason is Reason.SENT_BY_MOODLE
    assert all(params[-1] == 7 for _, params in cursor.statements), "every statement guarded by the mark"
    assert any(sql.startswith("UPDATE") and "= NULL" in sql for sql, _ in cursor.statements), "refused: restored"


# -- the describer ------------------------------------------------------------------------------
def test_describe_never_repeats_the_servers_text() -> None:
    assert describe(pymysql.err.OperationalError(1045, f"Access denied ... {SECRET}")) == "MySQL error 1045"
    assert describe(TlsError("TLS to x refused")) == "TLS to x refused"
    assert describe(StoreError("cannot read the ledger: MySQL error 1146")).endswith("MySQL error 1146")
    assert describe(ValueError(SECRET)) == "ValueError"


# -- a replay's stores ----------------------------------------------------------------------------
def test_a_replay_never_moves_the_live_checkpoint_and_a_dry_run_writes_nothing() -> None:
    live = MemoryStore(FakeClock())
    live.checkpoint = Checkpoint(Position("binlog.000005", 4))
    live.outbox_insert(1, 11, None)
    replay: SessionStore = KeepLivePosition(live)
    claim = replay.claim([resolution(1, Status.CLAIMED, None)], None, 1.0)
    assert claim is not None and claim.outbox_ids == {1}
    replay.commit([resolution(1, mark=claim.mark)], Checkpoint(Position("binlog.000001", 900)))
    assert live.checkpoint == Checkpoint(Position("binlog.000005", 4)) and live.ledger[1].status is Status.OFFLOADED

    live.outbox_insert(2, 12, None)
    dry: SessionStore = DryRun(live)
    assert dry.claim([resolution(2, Status.CLAIMED, None)], None, 1.0) is not None
    dry.commit([resolution(2)], Checkpoint(Position("binlog.000009", 4)))
    assert live.unsent(2) and 2 not in live.ledger and live.checkpoint == Checkpoint(Position("binlog.000005", 4))


def test_the_store_depends_on_nothing_of_the_loop_above_it() -> None:
    """source → correlate → decide → dispatch → store: the store never reaches back up."""
    import ast
    from pathlib import Path

    above = ("session", "pipeline", "correlate", "dispatch", "cli", "claiming", "replaying", "runtime", "operations")
    package = Path(__file__).resolve().parent.parent / "cdc_offload" / "store"
    reaching_up = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                # `from cdc_offload import session` names the module in the alias.
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            reaching_up += [f"{path.name}: {n}" for n in names if n.split(".")[:2][-1] in above]
    assert reaching_up == []
