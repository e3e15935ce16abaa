"""Checks against the real servers before anything runs: each says ok, or the problem and the fix."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload import tls
from cdc_offload.check_result import CheckResult
from cdc_offload.model import Checkpoint
from cdc_offload.mysql_connection import connect
from cdc_offload.mysql_errors import explain
from cdc_offload.settings import Dsn, Settings
from cdc_offload.source.rules import RULES, VARIABLES
from cdc_offload.source.server_facts import read_variables


def rule_checks(values: dict[str, str], server_id: int) -> list[CheckResult]:
    """The source server's settings against `rules.RULES` (the ones the reader also enforces at
    start-up): a failure per broken rule, one ok line per rule name that holds."""
    results: list[CheckResult] = []
    for name, group in itertools.groupby(RULES, key=lambda rule: rule.name):
        rules = list(group)
        broken = [rule for rule in rules if rule.broken(values, server_id)]
        results.extend(
            CheckResult(name, False, rule.say(rule.problem, values, server_id), rule.say(rule.fix, values, server_id))
            for rule in broken
        )
        if not broken and rules[0].report_ok:
            results.append(CheckResult(name, True))
    return results


def source_checks(settings: Settings, saved: Checkpoint | None) -> list[CheckResult]:
    results: list[CheckResult] = []
    try:
        connection = connect(settings.source, autocommit=True, read_timeout=10.0)
    except pymysql.err.Error as error:
        return [_connection_failed("source", settings.source, error, "the reader's password")]
    try:
        with connection.cursor() as cursor:
            results.extend(rule_checks(read_variables(cursor, VARIABLES), settings.server_id))
            results.append(_tls_result("source", settings.source, *tls.session_tls(connection)))
            results.append(_replication_privilege(cursor))
            grant_lines = _grants(cursor)
            results.extend(reader_privilege_checks(grant_lines, settings))
            results.extend(recipient_privilege_checks(grant_lines, settings))
            results.extend(_table_checks(cursor, settings))
            if saved is not None:
                results.append(_position_on_server(cursor, saved))
            results = _managed_service(cursor, results)
    finally:
        connection.close()
    return results


def _managed_service(cursor: Any, results: list[CheckResult]) -> list[CheckResult]:
    """RDS/Aurora: fixes said in parameter-group terms, the binlog retention and the grants note."""
    from cdc_offload import managed  # it builds on CheckResult, defined here

    service, extra = managed.service_checks(cursor)
    return managed.adapt_fixes(results, service) + extra


def _replication_privilege(cursor: Any) -> CheckResult:
    """The binlog status is readable (what a first start asks the server)."""
    statement = "SHOW MASTER STATUS"
    try:
        try:
            cursor.execute(statement)
        except pymysql.err.ProgrammingError:
            statement = "SHOW BINARY LOG STATUS"  # MySQL 8.4 removed SHOW MASTER STATUS
            cursor.execute(statement)
        row = cursor.fetchone()
    except pymysql.err.Error:
        return CheckResult(
            "binlog status",
            False,
            f"the reader cannot run {statement}",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the reader (see `cdc-offload init`)",
        )
    if row is None:
        return CheckResult("binlog status", False, f"{statement} is empty", "turn the binlog on")
    return CheckResult("binlog status", True)


def _connection_failed(side: str, dsn: Dsn, error: BaseException, password: str) -> CheckResult:
    if isinstance(error, tls.TlsError):
        return CheckResult(
            f"{side} connection",
            False,
            error.message,
            f"check --{side}-ssl-ca/--{side}-ssl-cert/--{side}-ssl-key, the DSN's host name and the server's TLS",
        )
    del password  # the fix now names the password's options itself, when the password is the problem
    explained = explain(error, side, dsn)
    return CheckResult(f"{side} connection", False, f"cannot connect to {dsn}: {explained.said}", explained.fix)


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _tls_result(side: str, dsn: Dsn, version: str, cipher: str) -> CheckResult:
    """Whether the link in use is encrypted and verified. The binlog and the outbox carry passwords:
    off a loopback link, plaintext or an unverified certificate is worth a warning."""
    name = f"{side} TLS"
    if cipher and dsn.tls.enabled:
        return CheckResult(f"{name} ({version}, verified)", True)
    if dsn.host in _LOOPBACK:
        return CheckResult(f"{name} ({'encrypted, unverified' if cipher else 'off'}: a loopback link)", True)
    if cipher:
        return CheckResult(
            name,
            True,
            f"encrypted ({version}) but the server's certificate is not verified",
            warning=True,
            fix=f"give --{side}-ssl-ca (and --{side}-require-tls)",
        )
    return CheckResult(
        name,
        True,
        "the connection is NOT encrypted, and it carries the passwords in the outbox",
        warning=True,
        fix=f"start the server with TLS and give --{side}-ssl-ca and --{side}-require-tls",
    )


# -- privileges ------------------------------------------------------------------------------------

_GRANT_LINE = re.compile(r"^GRANT\s+(?P<privileges>.+?)\s+ON\s+(?P<target>\S+)\s+TO\s+(?P<rest>.*)$", re.S | re.I)
_TARGET = re.compile(r"^(?P<db>`(?:[^`]|``)*`|\*|[^.]+)\.(?P<table>`(?:[^`]|``)*`|\*|\S+)$")
_COLUMNS = re.compile(r"^(?P<privilege>[A-Z ]+?)\s*\((?P<columns>.*)\)$", re.S)
_REPLICATION_CLIENT = frozenset({"REPLICATION CLIENT", "BINLOG MONITOR"})
_EVERYTHING = "ALL PRIVILEGES"


@dataclass(frozen=True, slots=True)
class Grant:
    """One privilege from SHOW GRANTS: on `db`.`table` (`*` for any), optionally on some columns."""

    privilege: str
    db: str
    table: str
    columns: frozenset[str] = frozenset()
    grant_option: bool = False

    def render(self) -> str:
        columns = f" ({', '.join(f'`{c}`' for c in sorted(self.columns))})" if self.columns else ""
        db = "*" if self.db == "*" else f"`{self.db}`"
        table = "*" if self.table == "*" else f"`{self.table}`"
        return f"{self.privilege}{columns} ON {db}.{table}" + (" WITH GRANT OPTION" if self.grant_option else "")


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") and name.endswith("`") else name


def _split_privileges(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_grants(lines: list[str]) -> tuple[list[Grant], list[str]]:
    """SHOW GRANTS lines → privileges, and the lines we could not read (role grants, PROXY, ...).
    The `IDENTIFIED BY PASSWORD` part of a line (a hash) is never kept."""
    grants: list[Grant] = []
    unread: list[str] = []
    for line in lines:
        match = _GRANT_LINE.match(line.strip())
        target = _TARGET.match(match.group("target")) if match else None
        if match is None or target is None:
            unread.append(line.split(" TO ", 1)[0][:120])
            continue
        db, table = _unquote(target.group("db")), _unquote(target.group("table"))
        grant_option = "WITH GRANT OPTION" in match.group("rest").upper()
        for raw in _split_privileges(match.group("privileges")):
            privilege = " ".join(raw.upper().split())
            columns: frozenset[str] = frozenset()
            found = _COLUMNS.match(privilege)
            if found:
                privilege = found.group("privilege").strip()
                inside = raw[raw.index("(") + 1 : raw.rindex(")")]
                columns = frozenset(_unquote(c.strip()).lower() for c in _split_privileges(inside))
            if privilege == "ALL":
                privilege = _EVERYTHING
            grants.append(Grant(privilege, db, table, columns, grant_option))
    return grants, unread


def _grants(cursor: Any) -> list[str]:
    cursor.execute("SHOW GRANTS")
    return [str(row[0]) for row in cursor.fetchall()]


def _covers(grant: Grant, privilege: str | frozenset[str], db: str, table: str, column: str | None = None) -> bool:
    wanted = {privilege} if isinstance(privilege, str) else set(privilege)
    if grant.privilege not in wanted and grant.privilege != _EVERYTHING:
        return False
    if grant.db not in ("*", db) or grant.table not in ("*", table):
        return False
    return not grant.columns or (column is not None and column.lower() in grant.columns)


def _has(grants: list[Grant], privilege: str | frozenset[str], db: str, table: str, column: str | None = None) -> bool:
    return any(_covers(g, privilege, db, table, column) for g in grants)


def _privilege_results(
    who: str, missing: list[str], extra: list[Grant], unread: list[str], fix: str
) -> list[CheckResult]:
    results = [
        CheckResult(f"{who} privileges", False, f"the {who} lacks {'; '.join(missing)}", fix)
        if missing
        else CheckResult(f"{who} privileges", True)
    ]
    if extra:
        results.append(
            CheckResult(
                f"{who} least privilege",
                True,
                f"broader than needed: {'; '.join(g.render() for g in extra)}",
                "REVOKE these; grant only what `cdc-offload init` prints",
                warning=True,
            )
        )
    if unread:
        results.append(
            CheckResult(
                f"{who} least privilege",
                True,
                f"grants not checked (roles or other kinds): {'; '.join(unread)}",
                "grant the account directly what `cdc-offload init` prints",
                warning=True,
            )
        )
    return results


def reader_privilege_checks(lines: list[str], settings: Settings) -> list[CheckResult]:
    """What the reader needs (REPLICATION SLAVE, REPLICATION CLIENT, SELECT on the two watched
    tables), and anything it has beyond that."""
    grants, unread = parse_grants(lines)
    db = settings.source.database
    tables = (settings.tables.user_table, settings.tables.outbox_table)
    missing = []
    if not _has(grants, "REPLICATION SLAVE", "*", "*"):
        missing.append("REPLICATION SLAVE ON *.*")
    if not _has(grants, _REPLICATION_CLIENT | {"SUPER"}, "*", "*"):
        missing.append("REPLICATION CLIENT ON *.*")
    missing += [f"SELECT ON `{db}`.`{t}`" for t in tables if not _has(grants, "SELECT", db, t)]

    def needed(grant: Grant) -> bool:
        if grant.grant_option or grant.privilege == _EVERYTHING:
            return False
        if grant.privilege == "USAGE":
            return True
        if grant.db == "*" and grant.table == "*":
            return grant.privilege in {"REPLICATION SLAVE", *_REPLICATION_CLIENT}
        # The recipient look-up's tables are granted by `init` too (see recipient_privilege_checks).
        readable = (*tables, *settings.tables.recipient_tables())
        return grant.privilege == "SELECT" and grant.db == db and grant.table in readable

    return _privilege_results(
        "reader",
        missing,
        [g for g in grants if not needed(g)],
        unread,
        "run the reader's GRANT statements `cdc-offload init` prints",
    )


def recipient_privilege_checks(lines: list[str], settings: Settings) -> list[CheckResult]:
    """What the recipient look-up reads on the replica besides the two watched tables: IOMAD's
    company, department, manager, profile-field, template and site-config tables (SELECT only)."""
    grants, _ = parse_grants(lines)
    db = settings.source.database
    missing = [
        f"SELECT ON `{db}`.`{table}`"
        for table in settings.tables.recipient_tables()
        if not _has(grants, "SELECT", db, table)
    ]
    if missing:
        return [
            CheckResult(
                "reader recipient look-up",
                False,
                f"the reader lacks {'; '.join(missing)}, so every row would be left to Moodle",
                "run the reader's GRANT statements `cdc-offload init` prints",
            )
        ]
    return [CheckResult("reader recipient look-up", True)]


def writer_privilege_checks(lines: list[str], settings: Settings) -> list[CheckResult]:
    """What the writer needs (SELECT and DELETE, or UPDATE of `sent`, on the outbox; its own state
    schema), and anything it has beyond that (SELECT, DELETE, UPDATE(sent) on the outbox and all on
    the state schema, as `init` prints)."""
    grants, unread = parse_grants(lines)
    db = settings.writer.database
    outbox = settings.tables.outbox_table
    sent = settings.tables.column("sent")
    schema = settings.state_schema
    missing = []
    if not _has(grants, "SELECT", db, outbox):
        missing.append(f"SELECT ON `{db}`.`{outbox}`")
    if settings.suppress == "delete" and not _has(grants, "DELETE", db, outbox):
        missing.append(f"DELETE ON `{db}`.`{outbox}`")
    if settings.suppress == "mark-sent" and not _has(grants, "UPDATE", db, outbox, sent):
        missing.append(f"UPDATE (`{sent}`) ON `{db}`.`{outbox}`")
    # The state tables: read, insert and upsert (creating them is `init`'s, which may run as an admin).
    missing += [f"{p} ON `{schema}`.*" for p in ("SELECT", "INSERT", "UPDATE") if not _has(grants, p, schema, "ledger")]

    def needed(grant: Grant) -> bool:
        if grant.grant_option:
            return False
        if grant.privilege == "USAGE":
            return True
        if grant.db == schema and grant.table == "*":
            return True
        if grant.db != db or grant.table != outbox:
            return False
        if grant.privilege in ("SELECT", "DELETE"):
            return not grant.columns
        return grant.privilege == "UPDATE" and grant.columns == frozenset({sent.lower()})

    return _privilege_results(
        "writer",
        missing,
        [g for g in grants if not needed(g)],
        unread,
        "run the writer's GRANT statements `cdc-offload init` prints",
    )


def _table_checks(cursor: Any, settings: Settings) -> list[CheckResult]:
    results = []
    for table in (settings.tables.user_table, settings.tables.outbox_table):
        try:
            cursor.execute(f"SELECT 1 FROM `{settings.source.database}`.`{table}` LIMIT 0")
            cursor.fetchall()
            results.append(CheckResult(f"table {table}", True))
        except pymysql.err.Error as error:
            explained = explain(error, "source", settings.source)
            results.append(
                CheckResult(
                    f"table {table}",
                    False,
                    f"cannot read {settings.source.database}.{table}: {explained.said}",
                    explained.fix,
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
        return [_connection_failed("writer", settings.writer, error, "the writer's password")]
    try:
        results.append(_tls_result("writer", settings.writer, *tls.session_tls(connection)))
        with connection.cursor() as cursor:
            results.extend(writer_privilege_checks(_grants(cursor), settings))
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


HOW_TO_TELL_LOCK_FACTORY = (
    "look in Moodle's config.php: with no $CFG->lock_factory line (or '\\core\\lock\\mysql_lock_factory') the "
    "site's cron locks are MySQL named locks and --moodle-lock mysql applies; any other factory (database rows, "
    "files, Redis, ...) needs --moodle-lock none"
)


def moodle_lock_check(settings: Settings) -> CheckResult:
    """Whether claims run under the lock IOMAD's email task runs under (README, "Against IOMAD's task")."""
    key = settings.moodle_task_lock
    if key is None:
        return CheckResult(
            "Moodle email-task lock",
            True,
            "--moodle-lock none: claims do not exclude IOMAD's email task, which can send a row we also send "
            "(counted as duplicate_observed or uncertain)",
            HOW_TO_TELL_LOCK_FACTORY,
            warning=True,
        )
    database = settings.moodle_lock_database or settings.writer.database
    return CheckResult(
        f"Moodle email-task lock (GET_LOCK {key[:12]}… for {database}, prefix "
        f"{settings.moodle_lock_prefix or settings.tables.prefix}; right unless config.php sets $CFG->lock_factory)",
        True,
    )
