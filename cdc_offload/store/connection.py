"""The leader's one connection to the primary, and the transactions every part writes in.

Every transaction that commits renews the lease (`Lease.used`). A failed one is rolled back; one
whose connection may be in an unknown state is also closed (the server then drops the consumer
lock and any named lock with the session, so nothing stays locked by a connection we gave up)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pymysql

from cdc_offload.mysql_connection import connect
from cdc_offload.mysql_errors import describe
from cdc_offload.settings import Dsn
from cdc_offload.store.lease import Lease
from cdc_offload.store.sql import Cursor
from cdc_offload.store.values import LeadershipLost, StoreError


class Link:
    def __init__(self, dsn: Dsn, lease: Lease) -> None:
        self._dsn = dsn
        self.lease = lease
        self._connection: pymysql.Connection[Any] | None = None

    def open(self) -> None:
        self.close()
        try:
            self._connection = connect(self._dsn, autocommit=False)
            with self._connection.cursor() as cursor:
                cursor.execute("SET SESSION wait_timeout = %s", (self.lease.server_timeout,))
            self.commit()
        except pymysql.err.Error as error:
            self.close()
            raise StoreError(f"cannot connect to the primary {self._dsn}: {describe(error)}") from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    def cursor(self) -> Cursor:
        if self._connection is None:
            raise StoreError("not connected to the primary")
        cursor: Cursor = self._connection.cursor()
        return cursor

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()
        self.lease.used()

    def commit_quietly(self) -> None:
        """Commit without counting it as talking for the lease (a statement outside our work)."""
        if self._connection is not None:
            self._connection.commit()

    def rollback_quietly(self) -> None:
        if self._connection is not None:
            try:
                self._connection.rollback()
            except pymysql.err.Error:
                self.close()

    @contextlib.contextmanager
    def transaction(self, failure: str, *, close_on_error: bool = True) -> Iterator[Cursor]:
        """One transaction, committed when the block ends. `LeadershipLost` is rolled back and
        raised as it is; a MySQL error becomes `StoreError("<failure>: MySQL error N")`, never the
        server's text (it can quote values). `close_on_error` for writes: after a failed write the
        connection's state is unknown, so it is not used again."""
        try:
            with self.cursor() as cursor:
                yield cursor
            self.commit()
        except LeadershipLost:
            self.rollback_quietly()
            raise
        except pymysql.err.Error as error:
            self.rollback_quietly()
            if close_on_error:
                self.close()
            raise StoreError(f"{failure}: {describe(error)}") from None
