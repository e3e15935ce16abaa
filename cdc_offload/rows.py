"""Column values of a watched row (by column name) to our row types, strictly: a value we do not
expect is a `ValueError` naming the column (never the value), and the row is left to Moodle."""

from __future__ import annotations

from collections.abc import Mapping

from cdc_offload.model import OutboxRow, UserRow
from cdc_offload.settings import TableNames


def _text(column: str, value: object, *, nullable: bool = True) -> str:
    if value is None:
        if nullable:
            return ""
        raise ValueError(f"column {column} is NULL")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"column {column} holds bytes that are not valid UTF-8") from None
    return str(value)


def _integer(column: str, value: object, *, nullable: bool = False) -> int | None:
    if value is None:
        if nullable:
            return None
        raise ValueError(f"column {column} is NULL")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"column {column} is not an integer")
    return value


def _require(values: Mapping[str, object], column: str) -> object:
    if column not in values:
        raise ValueError(f"column {column} is not in the row image (was the table altered?)")
    return values[column]


def user_from_values(values: Mapping[str, object]) -> UserRow:
    return UserRow(
        id=_integer("id", _require(values, "id")) or 0,
        username=_text("username", _require(values, "username")),
        firstname=_text("firstname", _require(values, "firstname")),
        lastname=_text("lastname", _require(values, "lastname")),
        email=_text("email", _require(values, "email")),
        auth=_text("auth", values.get("auth", "manual")),
        deleted=bool(_integer("deleted", _require(values, "deleted"))),
        suspended=bool(_integer("suspended", _require(values, "suspended"))),
    )


class UnusableOutboxRow(ValueError):
    """An outbox row we cannot use, with its id and user when those two at least decoded, so the
    ledger can say why the row was left to Moodle."""

    def __init__(self, problem: str, outbox_id: int | None, userid: int | None) -> None:
        super().__init__(problem)
        self.outbox_id = outbox_id
        self.userid = userid


def outbox_from_values(values: Mapping[str, object], tables: TableNames) -> OutboxRow:
    try:
        return _outbox_row(values, tables)
    except ValueError as error:
        raise UnusableOutboxRow(
            str(error), _plain_int(values.get(tables.column("id"))), _plain_int(values.get(tables.column("userid")))
        ) from None


def _plain_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _outbox_row(values: Mapping[str, object], tables: TableNames) -> OutboxRow:
    def get(logical: str) -> object:
        return _require(values, tables.column(logical))

    templatename = get("templatename")
    # IOMAD declares id, userid, subject, body and due NOT NULL. A NULL there means a schema or a
    # writer we do not know: the row is left to Moodle rather than sent empty or at a guessed time.
    return OutboxRow(
        id=_integer("id", get("id")) or 0,
        userid=_integer("userid", get("userid")) or 0,
        templatename=None if templatename is None else _text("templatename", templatename),
        sent=_integer("sent", get("sent"), nullable=True),
        due=_integer("due", get("due")) or 0,
        companyid=_integer("companyid", get("companyid"), nullable=True) or 0,
        subject=_text("subject", get("subject"), nullable=False),
        body=_text("body", get("body"), nullable=False),
        headers=_text("headers", values.get(tables.column("headers"))),
        senderid=_integer("senderid", values.get(tables.column("senderid")), nullable=True),
    )
