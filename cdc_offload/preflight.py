"""Checks against the real servers before anything runs: each says ok, or the problem and the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload.model import Checkpoint
from cdc_offload.settings import Settings
from cdc_offload.store import connect


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    problem: str = ""
    fix: str = ""
    warning: bool = False


def _variables(cursor: Any, names: tuple[str, ...]) -> dict[str, str]:
    cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")", names)
    return {str(name).lower(): str(value) for name, value in cursor.fetchall()}


def _setting(values: dict[str, str], name: str, expected: str, fix: str, label: str) -> CheckResult:
    actual = values.get(name)
    if actual is None:
        return CheckResult(label, True)
    if actual.upper() == expected:
        return CheckResult(label, True)
    return CheckResult(label, False, f"{name} is {actual}, not {expected}", fix)


def source_checks(settings: Settings, saved: Checkpoint | None) -> list[CheckResult]:
    results: list[CheckResult] = []
    try:
        connection = connect(settings.source, autocommit=True, read_timeout=10.0)
    except pymysql.err.Error as error:
        code = error.args[0] if error.args else "?"
        return [
            CheckResult(
                "source connection",
                False,
                f"cannot connect to {settings.source} (MySQL error {code})",
                "check --source-dsn, the reader's password and the network",
            )
        ]
    try:
        with connection.cursor() as cursor:
            values = _variables(
                cursor,
                (
                    "log_bin",
                    "binlog_format",
                    "binlog_row_image",
                    "binlog_row_metadata",
                    "log_bin_compress",
                    "binlog_transaction_compression",
                    "server_id",
                ),
            )
            results.append(
                CheckResult("binlog on", True)
                if values.get("log_bin", "OFF").upper() == "ON"
                else CheckResult(
                    "binlog on", False, "log_bin is OFF", "start the server with --log-bin (and restart it)"
                )
            )
            results.append(
                _setting(
                    values,
                    "binlog_format",
                    "ROW",
                    "SET GLOBAL binlog_format = 'ROW' and put binlog_format=ROW in the server config",
                    "binlog_format ROW",
                )
            )
            results.append(
                _setting(
                    values,
                    "binlog_row_image",
                    "FULL",
                    "SET GLOBAL binlog_row_image = 'FULL' and put it in the server config",
                    "binlog_row_image FULL",
                )
            )
            results.append(
                _setting(
                    values,
                    "binlog_row_metadata",
                    "FULL",
                    "SET GLOBAL binlog_row_metadata = 'FULL' (MariaDB >= 10.5, MySQL >= 8.0.1): column names",
                    "binlog_row_metadata FULL",
                )
            )
            for name in ("log_bin_compress", "binlog_transaction_compression"):
                if values.get(name, "OFF").upper() == "ON":
                    results.append(
                        CheckResult(
                            "binlog compression off",
                            False,
                            f"{name} is ON: compressed events cannot be read",
                            f"SET GLOBAL {name} = OFF",
                        )
                    )
            if not any(r.name == "binlog compression off" for r in results):
                results.append(CheckResult("binlog compression off", True))
            if values.get("server_id") == str(settings.server_id):
                results.append(
                    CheckResult(
                        "server_id unique",
                        False,
                        f"--server-id {settings.server_id} is the source server's own id",
                        "pick another --server-id, unique among all replicas",
                    )
                )
            results.append(_replication_privilege(cursor))
            results.extend(_table_checks(cursor, settings))
            if saved is not None:
                results.append(_position_on_server(cursor, saved))
    finally:
        connection.close()
    return results


def _replication_privilege(cursor: Any) -> CheckResult:
    try:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
    except pymysql.err.Error:
        return CheckResult(
            "reader privileges",
            False,
            "the reader cannot run SHOW MASTER STATUS",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the reader (see `cdc-offload init`)",
        )
    if row is None:
        return CheckResult("reader privileges", False, "SHOW MASTER STATUS is empty", "turn the binlog on")
    cursor.execute("SHOW GRANTS")
    grants = " ".join(str(r[0]).upper() for r in cursor.fetchall())
    if "REPLICATION SLAVE" not in grants and "ALL PRIVILEGES ON *.*" not in grants:
        return CheckResult(
            "reader privileges",
            False,
            "the reader lacks REPLICATION SLAVE",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the reader",
        )
    return CheckResult("reader privileges", True)


def _table_checks(cursor: Any, settings: Settings) -> list[CheckResult]:
    results = []
    for table in (settings.tables.user_table, settings.tables.outbox_table):
        try:
            cursor.execute(f"SELECT 1 FROM `{settings.source.database}`.`{table}` LIMIT 0")
            cursor.fetchall()
            results.append(CheckResult(f"table {table}", True))
        except pymysql.err.Error as error:
            results.append(
                CheckResult(
                    f"table {table}",
                    False,
                    f"cannot read {settings.source.database}.{table} (MySQL error {error.args[0]})",
                    "check --table-prefix and GRANT SELECT on the table to the reader",
                )
            )
    return results


def _position_on_server(cursor: Any, saved: Checkpoint) -> CheckResult:
    cursor.execute("SHOW BINARY LOGS")
    files = {str(row[0]): int(row[1]) for row in cursor.fetchall()}
    position = saved.position
    if position.file not in files or position.offset > files[position.file]:
        return CheckResult(
            "saved position on server",
            False,
            f"the checkpoint {position} is no longer in the server's binlog (purged, or another server)",
            "rows since then are Moodle's to send; run `cdc-offload position set --now` to start from the end",
        )
    return CheckResult("saved position on server", True)


def writer_checks(settings: Settings, state_present: Callable[[], bool]) -> list[CheckResult]:
    results = []
    try:
        connection = connect(settings.writer, autocommit=True, read_timeout=10.0)
    except pymysql.err.Error as error:
        code = error.args[0] if error.args else "?"
        return [
            CheckResult(
                "writer connection",
                False,
                f"cannot connect to {settings.writer} (MySQL error {code})",
                "check --writer-dsn, the writer's password and the network",
            )
        ]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GRANTS")
            grants = " ".join(str(r[0]).upper() for r in cursor.fetchall())
        outbox = settings.tables.outbox_table.upper()
        needs = ("DELETE" if settings.suppress == "delete" else "UPDATE", "SELECT")
        broad = "ALL PRIVILEGES ON *.*" in grants
        if broad or (
            all(n in grants for n in needs)
            and (outbox in grants or f"`{settings.writer.database.upper()}`.*" in grants)
        ):
            results.append(
                CheckResult(
                    "writer privileges",
                    True,
                    problem="the writer has ALL PRIVILEGES ON *.*: grant only what `cdc-offload init` prints"
                    if broad
                    else "",
                    warning=broad,
                )
            )
        else:
            results.append(
                CheckResult(
                    "writer privileges",
                    False,
                    f"the writer cannot {' and '.join(needs)} on {settings.tables.outbox_table}",
                    "run the GRANT statements `cdc-offload init` prints",
                )
            )
    finally:
        connection.close()
    results.append(
        CheckResult("state schema", True)
        if state_present()
        else CheckResult(
            "state schema",
            False,
            f"the state schema `{settings.state_schema}` is missing",
            "run `cdc-offload init --writer-dsn ...` once",
        )
    )
    return results
