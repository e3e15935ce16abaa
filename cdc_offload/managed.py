"""What `check` says differently on managed and newer servers: Amazon RDS and Aurora (no SUPER, so
settings live in parameter groups and binlog retention in `mysql.rds_configuration`) and MySQL 8.4
(`SHOW MASTER STATUS` removed for `SHOW BINARY LOG STATUS`, replica terminology).

The detection and the advice are pure functions of what the server reports, unit-tested without a
managed server (none can run here); `service_checks` is the one that asks the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import pymysql

from cdc_offload.check_result import CheckResult
from cdc_offload.source.rules import PARAMETER_SETTINGS

# RDS retains binlogs for this long only when told to; NULL (the default) purges them as soon as
# no RDS replica needs them, which can be minutes: a restart then finds its checkpoint gone.
MIN_RETENTION_HOURS = 24
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class Service:
    """Which server this is. `managed`: "rds" or "aurora" (None when self-managed)."""

    mariadb: bool
    version: tuple[int, int, int]
    managed: str | None

    @property
    def name(self) -> str:
        product = "MariaDB" if self.mariadb else "MySQL"
        where = {"rds": f"RDS for {product}", "aurora": "Aurora MySQL"}.get(self.managed or "", product)
        return f"{where} {'.'.join(map(str, self.version))}"


def detect(variables: dict[str, str]) -> Service:
    """From SHOW GLOBAL VARIABLES: `version`, `version_comment`, `basedir`, `aurora_version`."""
    version_text = variables.get("version", "")
    found = _VERSION.match(version_text)
    version = (int(found[1]), int(found[2]), int(found[3])) if found else (0, 0, 0)
    mariadb = "mariadb" in (version_text + variables.get("version_comment", "")).lower()
    managed = None
    if variables.get("aurora_version"):
        managed = "aurora"
    elif variables.get("basedir", "").startswith("/rdsdbbin/"):
        managed = "rds"
    return Service(mariadb, version, managed)


def parameter_group(service: Service) -> str:
    return "the DB cluster parameter group" if service.managed == "aurora" else "the DB parameter group"


def adapt_fixes(results: list[CheckResult], service: Service) -> list[CheckResult]:
    """On RDS/Aurora nobody can `SET GLOBAL` these (no SUPER): say where they are set instead."""
    if service.managed is None:
        return results
    return [_adapted(result, service) for result in results]


def _adapted(result: CheckResult, service: Service) -> CheckResult:
    if result.ok:
        return result
    name = next((n for n in _SETTINGS if result.fix.startswith(f"SET GLOBAL {n}")), None)
    if name is not None:
        command = "modify-db-cluster-parameter-group" if service.managed == "aurora" else "modify-db-parameter-group"
        return replace(
            result,
            fix=f"set {name} = {_SETTINGS[name]} in {parameter_group(service)} of the {service.name} instance (the "
            f"console, or `aws rds {command}`): SET GLOBAL is not allowed there; it applies to new sessions",
        )
    if result.name == "binlog on":
        return replace(
            result,
            fix=(
                "Aurora MySQL: set binlog_format = ROW in the DB cluster parameter group and reboot the writer"
                if service.managed == "aurora"
                else "RDS writes a binlog only with automated backups on: set the backup retention period to "
                "1 day or more (modify the instance), then binlog_format = ROW in the DB parameter group"
            ),
        )
    return result


# The settings a parameter group holds, from the one rule table `check` and start-up share.
_SETTINGS = PARAMETER_SETTINGS


def retention_check(service: Service, hours: str | None, readable: bool) -> CheckResult:
    """RDS/Aurora's 'binlog retention hours' (from mysql.rds_configuration)."""
    name = "binlog retention (RDS)"
    fix = (
        f"as the master user: CALL mysql.rds_set_configuration('binlog retention hours', {MIN_RETENTION_HOURS * 3}); "
        "keep it longer than any outage the sidecar must survive"
    )
    if not readable:
        return CheckResult(
            name,
            True,
            "cannot read mysql.rds_configuration with the reader's account, so the binlog retention is unknown",
            "as the master user: CALL mysql.rds_show_configuration; 'binlog retention hours' must be "
            f"{MIN_RETENTION_HOURS} or more",
            warning=True,
        )
    if hours is None or not hours.strip().isdigit():
        return CheckResult(
            name,
            False,
            f"binlog retention hours is NULL on {service.name}: binlogs are purged as soon as no RDS replica needs "
            "them, so after a sidecar restart or outage its checkpoint is gone and it stops",
            fix,
        )
    if int(hours) < MIN_RETENTION_HOURS:
        return CheckResult(
            name,
            True,
            f"binlog retention hours is {hours}: an outage longer than that loses the checkpoint",
            fix,
            warning=True,
        )
    return CheckResult(f"binlog retention (RDS, {hours} h)", True)


def grants_note(service: Service) -> CheckResult:
    """What the master user can grant there (it has no SUPER): exactly what `init` prints."""
    return CheckResult(
        f"managed server ({service.name})",
        True,
        "",
        "run the GRANT statements `cdc-offload init` prints as the master user: it holds REPLICATION SLAVE and "
        "REPLICATION CLIENT WITH GRANT OPTION (SUPER does not exist there); do not give the reader the master user",
    )


def service_checks(cursor: Any) -> tuple[Service, list[CheckResult]]:
    """Asks the server what it is; on RDS/Aurora, its binlog retention."""
    cursor.execute(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'version_comment', 'basedir', 'aurora_version')"
    )
    service = detect({str(name).lower(): str(value) for name, value in cursor.fetchall()})
    if service.managed is None:
        return service, []
    try:
        cursor.execute("SELECT value FROM mysql.rds_configuration WHERE name = 'binlog retention hours'")
        row = cursor.fetchone()
    except pymysql.err.Error:
        return service, [grants_note(service), retention_check(service, None, readable=False)]
    hours = None if row is None or row[0] is None else str(row[0])
    return service, [grants_note(service), retention_check(service, hours, readable=True)]
