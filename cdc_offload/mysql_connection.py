"""The one way this program opens a PyMySQL connection: the arguments for a DSN, and `connect`.

Every connection goes through `tls.connect` (the DSN's TLS settings, clear TLS errors, encryption
verified when required), so a setting cannot apply to one connection and not another."""

from __future__ import annotations

from typing import Any

import pymysql

from cdc_offload import tls
from cdc_offload.settings import Dsn


def connection_kwargs(
    dsn: Dsn, read_timeout: float | None = None, *, autocommit: bool | None = None, with_database: bool = False
) -> dict[str, Any]:
    """PyMySQL's arguments for `dsn`. No `read_timeout`: PyMySQL's default (wait for ever), which a
    binlog dump wants; `autocommit` None leaves PyMySQL's default (off)."""
    kwargs: dict[str, Any] = {
        "host": dsn.host,
        "port": dsn.port,
        "user": dsn.user,
        "password": dsn.password,
        "charset": "utf8mb4",
        "connect_timeout": 5,
    }
    if with_database:
        kwargs["database"] = dsn.database or None
    if autocommit is not None:
        kwargs["autocommit"] = autocommit
    if read_timeout is not None:
        # A write that cannot finish is as stuck as a read that never comes back.
        kwargs["read_timeout"] = read_timeout
        kwargs["write_timeout"] = read_timeout
    # TLS as the DSN asks (a verifying context, mandatory once on); nothing leaves PyMySQL's default.
    kwargs.update(tls.pymysql_kwargs(dsn.tls))
    return kwargs


def connect(dsn: Dsn, *, autocommit: bool, read_timeout: float | None = 30.0) -> pymysql.Connection[Any]:
    """A connection for statements (not a binlog dump): on the DSN's database, times in UTC."""
    connection = tls.connect(dsn, connection_kwargs(dsn, read_timeout, autocommit=autocommit, with_database=True))
    with connection.cursor() as cursor:
        # Ledger times are UTC whatever the server's zone.
        cursor.execute("SET time_zone = '+00:00'")
    return connection
