"""`check` on RDS/Aurora and MySQL 8.4, whose spellings differ: the detection and the advice from
what such servers report (none can run here), and the real `check` on MariaDB saying nothing of it."""

from __future__ import annotations

from cdc_offload.check_result import CheckResult
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.managed import adapt_fixes, detect, grants_note, retention_check
from cdc_offload.preflight import source_checks
from cdc_offload.settings import SinkSettings

RDS_80 = {"version": "8.0.39", "version_comment": "Source distribution", "basedir": "/rdsdbbin/mysql-8.0.39.R1/"}
AURORA_3 = {"version": "8.0.32", "basedir": "/rdsdbbin/oscar-8.0.mysql_aurora.3.05.2.0/", "aurora_version": "3.05.2"}
RDS_MARIADB = {"version": "10.11.8-MariaDB-log", "basedir": "/rdsdbbin/mariadb-10.11.8.R1/"}
SELF_84 = {"version": "8.4.3", "version_comment": "MySQL Community Server - GPL", "basedir": "/usr/"}


def test_managed_servers_are_recognised() -> None:
    assert detect(RDS_80).name == "RDS for MySQL 8.0.39"
    assert detect(AURORA_3).name == "Aurora MySQL 8.0.32"
    assert detect(RDS_MARIADB).name == "RDS for MariaDB 10.11.8"
    assert detect(SELF_84).managed is None and detect(SELF_84).version == (8, 4, 3)


def test_settings_are_fixed_in_the_parameter_group_not_with_set_global() -> None:
    failed = [
        CheckResult(
            "binlog_format ROW",
            False,
            "binlog_format is MIXED, not ROW",
            "SET GLOBAL binlog_format = 'ROW' and put it in the config",
        ),
        CheckResult(
            "binlog_row_metadata FULL",
            False,
            "binlog_row_metadata is MINIMAL",
            "SET GLOBAL binlog_row_metadata = 'FULL'",
        ),
        CheckResult("binlog on", False, "log_bin is OFF", "start the server with --log-bin"),
    ]
    rds = adapt_fixes(failed, detect(RDS_80))
    assert all("SET GLOBAL" not in r.fix or "not allowed" in r.fix for r in rds)
    assert "binlog_format = ROW in the DB parameter group" in rds[0].fix
    assert "modify-db-parameter-group" in rds[1].fix
    assert "backup retention period" in rds[2].fix
    aurora = adapt_fixes(failed, detect(AURORA_3))
    assert "DB cluster parameter group" in aurora[0].fix and "modify-db-cluster-parameter-group" in aurora[0].fix
    assert "reboot the writer" in aurora[2].fix
    assert adapt_fixes(failed, detect(SELF_84)) == failed, "a self-managed server keeps SET GLOBAL"


def test_rds_binlog_retention_null_fails_and_short_warns() -> None:
    service = detect(RDS_80)
    null = retention_check(service, None, readable=True)
    assert not null.ok and "NULL" in null.problem
    assert "CALL mysql.rds_set_configuration('binlog retention hours', 72)" in null.fix
    short = retention_check(service, "6", readable=True)
    assert short.ok and short.warning and "6" in short.problem
    assert retention_check(service, "168", readable=True) == CheckResult("binlog retention (RDS, 168 h)", True)
    unknown = retention_check(service, None, readable=False)
    assert unknown.warning and "rds_show_configuration" in unknown.fix
    assert "master user" in grants_note(service).fix


def test_check_on_a_self_managed_mariadb_says_nothing_of_rds(moodle: MoodleDatabase) -> None:
    results = source_checks(moodle.settings(SinkSettings(queue_url="unused")), None)
    names = [r.name for r in results]
    assert not [n for n in names if "RDS" in n or "managed" in n]
    assert {"binlog status", "binlog_format ROW"} <= set(names)
    assert all(r.ok for r in results if r.name in ("binlog status", "binlog_format ROW"))
