"""Can this source server be read without silently skipping rows? Each rule once, for both
askers: `check` (preflight.py) reports every rule with its fix, and the reader at start-up
(`server_facts`) refuses to run on those marked `at_run_time`, the ones that would lose rows
without a word (a binlog that is off, compressed events, our own server_id). The others (format,
row image, column names) are caught later by the reader itself, row by row, or only cost rows
that Moodle then sends; `check` warns about them before the first run.

Rules are pure functions of `SHOW GLOBAL VARIABLES` and our --server-id, unit-tested without a
server. `managed.py` words the fixes for RDS/Aurora parameter groups from the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

_ON = frozenset({"ON", "1"})


def _on(actual: str | None, our_server_id: int) -> bool:
    return actual is not None and actual.upper() in _ON


def _off(actual: str | None, our_server_id: int) -> bool:
    return actual is None or actual.upper() not in _ON


def _absent_or(expected: str) -> Callable[[str | None, int], bool]:
    # A server without the variable is older than the setting (MariaDB < 10.5 has no
    # binlog_row_metadata): nothing to set there, and the reader copes.
    return lambda actual, our_server_id: actual is None or actual.upper() == expected


def _not_ours(actual: str | None, our_server_id: int) -> bool:
    return actual != str(our_server_id)


@dataclass(frozen=True, slots=True)
class Rule:
    """One condition on one server variable."""

    name: str  # what `check` calls it
    variable: str
    holds: Callable[[str | None, int], bool]  # (the variable's value, our --server-id)
    problem: str  # what `check` says when it does not hold ({variable}, {actual}, {ours}, {source})
    fix: str  # what `check` advises ({variable}, {ours})
    refusal: str | None = None  # what the reader says refusing to start; None: `check` only
    setting: str | None = None  # the value to set, where a parameter group can set it (RDS/Aurora)
    report_ok: bool = True  # `check` lists it when it holds

    def broken(self, values: Mapping[str, str], our_server_id: int) -> bool:
        return not self.holds(values.get(self.variable), our_server_id)

    def say(self, template: str, values: Mapping[str, str], our_server_id: int, source: str = "") -> str:
        """`template` (its problem, fix or refusal) filled in; `source`: the server, as its DSN
        prints (never with a password)."""
        actual = values.get(self.variable, "")
        return template.format(variable=self.variable, actual=actual, ours=our_server_id, source=source)


_COMPRESSION_REFUSAL = (
    "{variable} is ON on the source server: compressed events cannot be read and would be skipped. "
    "SET GLOBAL {variable} = OFF (and in the server config), then `cdc-offload position set --now` "
    "if compressed events were written past the checkpoint"
)

RULES: tuple[Rule, ...] = (
    Rule(
        "binlog on",
        "log_bin",
        _on,
        "log_bin is OFF",
        "start the server with --log-bin (and restart it)",
        refusal="the binlog is off on the source server {source}: nothing can be read, rows are Moodle's "
        "to send. Start the server with --log-bin, then `cdc-offload position set --now` (the old position "
        "no longer continues)",
    ),
    Rule(
        "binlog_format ROW",
        "binlog_format",
        _absent_or("ROW"),
        "{variable} is {actual}, not ROW",
        "SET GLOBAL binlog_format = 'ROW' and put binlog_format=ROW in the server config",
        setting="ROW",
    ),
    Rule(
        "binlog_row_image FULL",
        "binlog_row_image",
        _absent_or("FULL"),
        "{variable} is {actual}, not FULL",
        "SET GLOBAL binlog_row_image = 'FULL' and put it in the server config",
        setting="FULL",
    ),
    Rule(
        "binlog_row_metadata FULL",
        "binlog_row_metadata",
        _absent_or("FULL"),
        "{variable} is {actual}, not FULL",
        "SET GLOBAL binlog_row_metadata = 'FULL' (MariaDB >= 10.5, MySQL >= 8.0.1): column names",
        setting="FULL",
    ),
    Rule(
        "binlog compression off",
        "log_bin_compress",
        _off,
        "{variable} is ON: compressed events cannot be read",
        "SET GLOBAL {variable} = OFF",
        refusal=_COMPRESSION_REFUSAL,
        setting="OFF",
    ),
    Rule(
        "binlog compression off",
        "binlog_transaction_compression",
        _off,
        "{variable} is ON: compressed events cannot be read",
        "SET GLOBAL {variable} = OFF",
        refusal=_COMPRESSION_REFUSAL,
        setting="OFF",
    ),
    Rule(
        "server_id unique",
        "server_id",
        _not_ours,
        "--server-id {ours} is the source server's own id",
        "pick another --server-id, unique among all replicas",
        refusal="--server-id {ours} is the source server's own server_id: pick another --server-id, "
        "unique among all replicas of this server",
        report_ok=False,
    ),
)

# Every variable a rule reads, in the table's order.
VARIABLES: tuple[str, ...] = tuple(dict.fromkeys(rule.variable for rule in RULES))

# The settings a parameter group holds on RDS/Aurora, and the value each must have.
PARAMETER_SETTINGS: dict[str, str] = {rule.variable: rule.setting for rule in RULES if rule.setting is not None}


def refusal(values: Mapping[str, str], our_server_id: int, source: str) -> str | None:
    """Why the reader must not start on this server, or None: the first broken run-time rule."""
    for rule in RULES:
        if rule.refusal is not None and rule.broken(values, our_server_id):
            return rule.say(rule.refusal, values, our_server_id, source)
    return None
