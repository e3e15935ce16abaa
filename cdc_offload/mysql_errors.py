"""A MySQL/MariaDB error, said the way an operator can act on: what the server said (in our words,
from the error code and the DSN, never the server's text, which can quote values) and the fix
that matches it. Covers every code `check` and the start-up connections can meet.

`describe` is the short form every other message uses (logs, exceptions, one-line CLI errors)."""

from __future__ import annotations

from dataclasses import dataclass

import pymysql

from cdc_offload.settings import Dsn
from cdc_offload.tls import TlsError

# Words the C resolver and the socket layer use in PyMySQL's 2003 text (the code alone cannot
# tell a wrong host name from a server that is down).
_NO_SUCH_HOST = ("name or service not known", "nodename nor servname", "name resolution", "no address associated")
_REFUSED = ("connection refused",)
_TIMED_OUT = ("timed out",)


@dataclass(frozen=True, slots=True)
class Explained:
    said: str
    fix: str


def error_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.err.Error) and error.args and isinstance(error.args[0], int):
        return int(error.args[0])
    return None


def describe(error: BaseException) -> str:
    """A short, content-free description of a failed statement or connection: a TLS error's own
    sentence, else the MySQL error code, never the server's text (it can quote values, and an
    outbox body holds a plaintext password); our own errors (RuntimeError subclasses such as
    `StoreError`) by their text, which is written to hold no row content; else the type's name."""
    if isinstance(error, TlsError):
        return error.message
    code = error_code(error)
    if code is not None:
        return f"MySQL error {code}"
    return str(error) if isinstance(error, RuntimeError) else type(error).__name__


def explain(error: BaseException, side: str, dsn: Dsn) -> Explained:
    """`side` is `source` or `writer`: the prefix of the options the fix names."""
    code = error_code(error)
    text = str(error.args[1]).lower() if isinstance(error, pymysql.err.Error) and len(error.args) > 1 else ""
    said, fix = _by_code(code, text, side, dsn)
    suffix = f" (MySQL error {code})" if code is not None else ""
    return Explained(said + suffix, fix)


def _by_code(code: int | None, text: str, side: str, dsn: Dsn) -> tuple[str, str]:
    where = f"{dsn.host}:{dsn.port}"
    if code == 2003 and any(words in text for words in _NO_SUCH_HOST):
        return f"the host name {dsn.host!r} does not resolve", f"correct the host in --{side}-dsn (or the DNS)"
    if code == 2003 and any(words in text for words in _REFUSED):
        return (
            f"nothing accepts connections at {where} (connection refused)",
            f"check the host and port in --{side}-dsn and that the server is running",
        )
    if code == 2003 and any(words in text for words in _TIMED_OUT):
        return (
            f"no answer from {where} in time",
            f"check the host and port in --{side}-dsn, and the firewalls and security groups between",
        )
    known = _known(side, dsn, text)
    if code in known:
        return known[code]
    return (
        f"the server at {where} refused the request" if code is not None else f"cannot connect to {where}",
        f"look the code up in the server's error reference; check --{side}-dsn and {_password_option(side)}",
    )


def _known(side: str, dsn: Dsn, text: str) -> dict[int, tuple[str, str]]:
    """What each error code a connection or statement of ours meets says, and its fix."""
    account = f"`{dsn.user}`"
    where = f"{dsn.host}:{dsn.port}"
    password = _password_option(side)
    grants = "run the GRANT statements `cdc-offload init` prints"
    return {
        2003: (f"cannot reach {where}", f"check the host and port in --{side}-dsn, the server and the network"),
        2005: (f"the host name {dsn.host!r} does not resolve", f"correct the host in --{side}-dsn (or the DNS)"),
        1045: (
            f"the server refused {account}: wrong password, or no such account for this client's host"
            + (" (no password was given)" if "using password: no" in text else ""),
            f"check the password ({password}) and that {account} exists for this host (`cdc-offload init`)",
        ),
        1698: (
            f"the server refused {account}: that account logs in by socket, not by password",
            f"use the account `cdc-offload init` creates, not {account}",
        ),
        1044: (f"{account} may not use the database `{dsn.database}`", grants),
        1049: (
            f"the server has no database `{dsn.database}`",
            f"name Moodle's database in --{side}-dsn (mysql://user@host:3306/DATABASE)",
        ),
        1130: (
            f"the server lets no account of that name connect from this client's host ({account})",
            f"create {account} for this host (e.g. {dsn.user}@'%'): `cdc-offload init` prints the statements",
        ),
        1129: (
            "the server blocked this client's host after too many failed connections",
            "run FLUSH HOSTS on the server (mariadb-admin flush-hosts) and raise max_connect_errors",
        ),
        1040: ("the server has no free connection (max_connections reached)", "raise max_connections, or free some"),
        1203: (
            f"{account} has used all the connections it may (max_user_connections)",
            f"raise MAX_USER_CONNECTIONS for {account} (two connections per sidecar, plus one per check)",
        ),
        1226: (f"{account} has used up a resource limit", f"lift the account's limits (ALTER USER {account} ...)"),
        1251: (
            "the server asks for an authentication method this client cannot do",
            f"give {account} caching_sha2_password or mysql_native_password",
        ),
        3159: (
            "the server accepts only encrypted connections (require_secure_transport=ON)",
            f"give --{side}-ssl-ca (and --{side}-require-tls)",
        ),
        1142: (f"{account} lacks a privilege on a table we use", grants),
        1143: (f"{account} lacks a column privilege we need", grants),
        1227: (f"{account} lacks a global privilege (REPLICATION CLIENT / SLAVE)", grants),
        1146: (
            f"a table we watch is missing in `{dsn.database}`",
            "check --table-prefix, --user-table and --outbox-table (IOMAD's local_email creates mdl_email)",
        ),
        1236: (
            "the server cannot send its binlog from the position asked (purged, or another server's)",
            "see `cdc-offload position set` (rows in between are Moodle's)",
        ),
        2006: (
            f"the server at {where} closed the connection",
            "check the server's error log, and proxies or firewalls cutting idle links",
        ),
        2013: (
            f"the connection to {where} was lost during a query",
            "check the server's error log, and proxies or firewalls cutting idle links",
        ),
    }


def _password_option(side: str) -> str:
    return f"--{side}-password-file (or CDC_OFFLOAD_{side.upper()}_PASSWORD)"
