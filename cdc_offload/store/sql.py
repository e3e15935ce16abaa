"""Small helpers every part of the store writes its SQL with."""

from __future__ import annotations

import datetime as dt

import pymysql.cursors

# The cursor every part writes through: the one transaction `Store` opens.
Cursor = pymysql.cursors.Cursor


def placeholders(count: int, one: str = "%s") -> str:
    return ", ".join([one] * count)


def optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def utc_now() -> dt.datetime:
    """Now as a naive UTC DATETIME value (the connection's time zone is UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
