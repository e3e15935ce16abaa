"""The source stage's shared rules, without a server: where a transaction ends and what a
checkpoint then holds (`TransactionFramer`), what a GTID checkpoint means (`gtid`), what the loop
is handed (`Batch`), and whether a server may be read at all (`rules`, for `check` and start-up)."""

from __future__ import annotations

import pymysql
import pytest

from cdc_offload.errors import PositionLost, SourceError
from cdc_offload.model import Checkpoint, Commit, EventCounts, Idle, Position, Undecodable
from cdc_offload.preflight import rule_checks
from cdc_offload.settings import Settings, SinkSettings, parse_dsn
from cdc_offload.source import SourceRefused
from cdc_offload.source.batching import CHUNK, Added, Batch
from cdc_offload.source.binlog.framing import ConnectionClosed
from cdc_offload.source.framer import TransactionFramer, read_failed
from cdc_offload.source.gtid import GtidState, MysqlGtidSet, gtid_state
from cdc_offload.source.rules import PARAMETER_SETTINGS, RULES, VARIABLES, refusal

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
START = Checkpoint(Position("binlog.000001", 4), "0-1-10", "1")
GOOD_SERVER = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "log_bin_compress": "OFF",
    "binlog_transaction_compression": "OFF",
    "server_id": "1",
}


def settings() -> Settings:
    source = parse_dsn("--source-dsn", "mysql://reader:s3cret-pw@db.example:3306/moodle")
    writer = parse_dsn("--writer-dsn", "mysql://writer:s3cret-pw@db.example:3306/moodle")
    return Settings(source=source, writer=writer, sink=SinkSettings(queue_url="https://sqs.example/q"))


def row(at: Checkpoint) -> Undecodable:
    return Undecodable("mdl_email", at, 0, "a watched row")


def commit(offset: int) -> Commit:
    return Commit(Checkpoint(Position("binlog.000001", offset)), 0)


# -- transaction boundaries -------------------------------------------------------------------------


def test_a_commit_is_the_next_boundary_with_the_gtid_state_of_its_transaction() -> None:
    framer = TransactionFramer(START, mariadb=True, server_id=1)
    framer.mariadb_gtid(0, "0-1-11", standalone=False)
    assert framer.query(begin=True, commit=False, file="binlog.000001", offset=300, timestamp=5) is None
    assert framer.boundary == START  # rows inside carry the last commit: a restart resumes there
    committed = framer.commit("binlog.000001", 900, 7)
    assert committed == Commit(Checkpoint(Position("binlog.000001", 900), "0-1-11", "1"), 7)
    assert framer.boundary == committed.checkpoint


def test_a_rotate_inside_a_transaction_never_becomes_a_resume_point() -> None:
    framer = TransactionFramer(START, mariadb=True, server_id=1)
    framer.mariadb_gtid(0, "0-1-11", standalone=False)
    framer.rotate("binlog.000002", 4)
    assert framer.boundary == START
    framer.commit("binlog.000001", 900, 7)
    framer.rotate("binlog.000002", 4)
    assert framer.boundary.position == Position("binlog.000002", 4)


def test_a_ddl_statement_outside_a_transaction_is_a_boundary() -> None:
    framer = TransactionFramer(START, mariadb=True, server_id=1)
    framer.mariadb_gtid(0, "0-1-11", standalone=True)
    committed = framer.query(begin=False, commit=False, file="binlog.000001", offset=500, timestamp=3)
    assert committed is not None and committed.checkpoint.gtid == "0-1-11"


def test_a_bounded_read_never_stops_inside_a_transaction() -> None:
    framer = TransactionFramer(START, mariadb=True, server_id=1)
    end = Position("binlog.000001", 800)
    framer.query(begin=True, commit=False, file="binlog.000001", offset=300, timestamp=0)
    assert not framer.past(end)
    framer.commit("binlog.000001", 900, 0)
    assert framer.past(end)


def test_a_gtid_event_of_the_other_server_family_is_refused() -> None:
    with pytest.raises(SourceRefused):
        TransactionFramer(START, mariadb=True, server_id=1).mysql_gtid(bytes(16), 5)
    with pytest.raises(SourceRefused):
        TransactionFramer(START, mariadb=False, server_id=1).mariadb_gtid(0, "0-1-11", standalone=False)


# -- what a failed read tells the loop ---------------------------------------------------------------


def test_a_purged_start_is_position_lost_naming_the_position_not_the_password() -> None:
    error = read_failed(pymysql.err.OperationalError(1236, "Could not find first log file name"), settings(), START)
    assert isinstance(error, PositionLost)
    assert "binlog.000001:4" in str(error) and "s3cret" not in str(error)


def test_a_server_id_clash_is_refused_and_a_lost_link_is_only_a_restart() -> None:
    assert isinstance(read_failed(pymysql.err.OperationalError(4052, "x"), settings(), START), SourceRefused)
    for lost in (pymysql.err.OperationalError(2013, "Lost"), ConnectionClosed(), TimeoutError()):
        error = read_failed(lost, settings(), START)
        assert type(error) is SourceError and str(error) == "the binlog connection was lost"


# -- GTID checkpoints ---------------------------------------------------------------------------------


def test_mariadb_gtid_state_keeps_the_last_per_domain_in_domain_order() -> None:
    state = GtidState("1-1-5, junk ,0-1-9")
    state.note(2, "2-7-1")
    state.note(0, "0-1-10")
    assert state.render() == "0-1-10,1-1-5,2-7-1"
    assert GtidState(state.render()).render() == state.render()  # a checkpoint reads back the same


def test_mysql_gtid_set_grows_by_merging_intervals() -> None:
    gtids = MysqlGtidSet(f"{UUID}:1-3")
    gtids.add(UUID, 4)
    gtids.add(UUID, 6)
    assert gtids.render() == f"{UUID}:1-4:6"
    gtids.add(UUID, 5)
    assert gtids.render() == f"{UUID}:1-6"


def test_a_checkpoint_gtid_of_the_wrong_family_is_dropped_on_mysql() -> None:
    assert gtid_state("0-1-10", mariadb=False).render() is None
    assert gtid_state("0-1-10", mariadb=True).render() == "0-1-10"


# -- batching -----------------------------------------------------------------------------------------


def test_commits_of_transactions_without_watched_rows_collapse_to_the_newest() -> None:
    batch = Batch()
    assert batch.add(commit(100)) is Added.HELD
    assert batch.add(commit(200)) is Added.HELD
    assert batch.take() == [commit(200)]
    assert batch.take() == []


def test_a_held_commit_goes_before_the_next_row_and_a_watched_commit_is_kept() -> None:
    batch = Batch()
    batch.add(commit(100))
    watched = row(commit(100).checkpoint)
    assert batch.add(watched) is Added.ROW
    assert batch.add(commit(200)) is Added.COMMIT
    assert batch.take() == [commit(100), watched, commit(200)]


def test_counts_do_not_release_a_held_commit_and_idle_does() -> None:
    batch = Batch()
    batch.add(commit(100))
    counts = EventCounts((("xid", 1),))
    assert batch.add(counts) is Added.COUNTS
    assert batch.take() == [counts, commit(100)]
    batch.add(commit(200))
    assert batch.add(Idle(1.0)) is Added.IDLE
    assert batch.take() == [commit(200), Idle(1.0)]


def test_a_batch_is_full_at_chunk_items() -> None:
    batch = Batch()
    for _ in range(CHUNK - 1):
        batch.add(row(START))
    assert not batch.full
    batch.add(row(START))
    assert batch.full


# -- can this server be read ---------------------------------------------------------------------------


def test_each_rule_reads_one_variable_and_each_variable_is_read_once() -> None:
    assert len(VARIABLES) == len(RULES) == len({(rule.name, rule.variable) for rule in RULES})
    assert PARAMETER_SETTINGS["binlog_format"] == "ROW"
    assert "log_bin" not in PARAMETER_SETTINGS  # no parameter turns it on: the fix is the backups setting


def test_a_good_server_passes_both_check_and_start_up() -> None:
    assert refusal(GOOD_SERVER, 4_242_001, "db") is None
    results = rule_checks(GOOD_SERVER, 4_242_001)
    assert all(result.ok for result in results)
    assert [result.name for result in results] == [
        "binlog on",
        "binlog_format ROW",
        "binlog_row_image FULL",
        "binlog_row_metadata FULL",
        "binlog compression off",
    ]


def test_start_up_refuses_what_would_skip_rows_and_says_which_server() -> None:
    said = refusal({**GOOD_SERVER, "log_bin": "OFF"}, 4_242_001, str(settings().source))
    assert said is not None and "mysql://reader@db.example:3306/moodle" in said and "s3cret" not in said
    said = refusal({**GOOD_SERVER, "binlog_transaction_compression": "ON"}, 4_242_001, "db")
    assert said is not None and said.startswith("binlog_transaction_compression is ON")
    said = refusal({**GOOD_SERVER, "server_id": "7"}, 7, "db")
    assert said is not None and said.startswith("--server-id 7 is the source server's own server_id")


def test_check_reports_what_start_up_tolerates_with_its_fix() -> None:
    values = {**GOOD_SERVER, "binlog_format": "MIXED", "log_bin_compress": "ON", "binlog_transaction_compression": "ON"}
    assert refusal({**GOOD_SERVER, "binlog_format": "MIXED"}, 9, "db") is None
    failed = [result for result in rule_checks(values, 9) if not result.ok]
    assert [(r.name, r.problem) for r in failed] == [
        ("binlog_format ROW", "binlog_format is MIXED, not ROW"),
        ("binlog compression off", "log_bin_compress is ON: compressed events cannot be read"),
        ("binlog compression off", "binlog_transaction_compression is ON: compressed events cannot be read"),
    ]
    assert failed[1].fix == "SET GLOBAL log_bin_compress = OFF"


def test_a_server_without_the_newer_settings_is_not_failed_for_them() -> None:
    older = {name: value for name, value in GOOD_SERVER.items() if name != "binlog_row_metadata"}
    assert all(result.ok for result in rule_checks(older, 9))
