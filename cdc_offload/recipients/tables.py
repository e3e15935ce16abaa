"""Reads IOMAD's tables on the replica for the recipient look-up: one PyMySQL connection, one SELECT
per table per round (ids batched), all of a round's SELECTs in one consistent snapshot."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_offload.errors import ReplicaUnreachable
from cdc_offload.mysql_connection import connect
from cdc_offload.mysql_errors import describe
from cdc_offload.recipients.template import Template, TemplateValueError
from cdc_offload.settings import Settings, identifier


class LookupUnavailable(RuntimeError):
    """The replica could not be read (connection, permission, schema). The text names the cause by
    MySQL error code or type, never by a value."""


# Connection-level failures (can't connect, gone away, lost, killed, too many connections): the
# replica is unreachable for now, not refusing us for good.
_CONNECTION_CODES = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055})


def _unavailable(error: BaseException) -> Exception:
    """A lost link (ReplicaUnreachable: the session is rebuilt and the rows read again) or a refusal
    that will not pass by itself (LookupUnavailable: the rows are left to Moodle, `check` says why)."""
    code = error.args[0] if isinstance(error, pymysql.err.Error) and error.args else None
    if isinstance(error, OSError) or code in _CONNECTION_CODES:
        return ReplicaUnreachable(f"the recipient look-up lost the replica: {describe(error)}")
    return LookupUnavailable(describe(error))


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    email: str
    firstname: str
    deleted: bool
    suspended: bool
    lang: str

    def __repr__(self) -> str:
        return f"UserRecord(id={self.id})"


@dataclass(frozen=True, slots=True)
class CompanyUser:
    id: int
    userid: int
    companyid: int
    departmentid: int
    managertype: int


@dataclass(frozen=True, slots=True)
class Department:
    id: int
    parent: int
    company: int


@dataclass(frozen=True, slots=True)
class Company:
    id: int
    name: str
    emailprofileid: int

    def __repr__(self) -> str:
        return f"Company(id={self.id})"


@dataclass(frozen=True, slots=True)
class TemplateRow:
    """A company's row of mdl_email_template: its enabled flags and, for rows queued without a
    frozen template, the template itself (`template` None: a column of a type IOMAD never writes)."""

    id: int
    companyid: int
    name: str
    lang: str
    disabled: int
    disabledmanager: int
    disabledsupervisor: int
    template: Template | None


def _in(values: Collection[object]) -> str:
    return ", ".join(["%s"] * len(values))


class ReplicaTables:
    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.source
        prefix = settings.tables.prefix
        self._table = {
            name: identifier("--table-prefix", prefix + name)
            for name in ("config", "company", "company_users", "department", "user_info_data", "email_template")
        }
        self._table["user"] = settings.tables.user_table
        self._connection: pymysql.Connection[Any] | None = None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(pymysql.err.Error, OSError):
                self._connection.close()
            self._connection = None

    def _rows(self, sql: str, params: Collection[object]) -> list[tuple[Any, ...]]:
        if self._connection is None:
            raise LookupUnavailable("no open connection")
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(sql, tuple(params))
                return list(cursor.fetchall())
        except (pymysql.err.Error, OSError) as error:
            self.close()
            raise _unavailable(error) from None

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[None]:
        """A round's SELECTs see one state of the replica (a manager moved between two of them
        cannot make half an answer)."""
        if self._connection is None:
            try:
                self._connection = connect(self._dsn, autocommit=True, read_timeout=10.0)
            except (pymysql.err.Error, OSError) as error:
                raise _unavailable(error) from None
        self._rows("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", ())
        try:
            yield
        finally:
            if self._connection is not None:
                with contextlib.suppress(LookupUnavailable):
                    self._rows("COMMIT", ())

    def config(self, names: Collection[str]) -> dict[str, str]:
        rows = self._rows(f"SELECT name, value FROM `{self._table['config']}` WHERE name IN ({_in(names)})", names)
        return {str(name): str(value) for name, value in rows}

    def templates(self, companyids: Collection[int], names: Collection[str]) -> list[TemplateRow]:
        if not companyids or not names:
            return []
        rows = self._rows(
            "SELECT id, companyid, name, lang, disabled, disabledmanager, disabledsupervisor, emailto, emailtoother, "
            "emailcc, emailccother, emailfrom, emailfromother, emailfromothername "
            f"FROM `{self._table['email_template']}` "
            f"WHERE companyid IN ({_in(companyids)}) AND name IN ({_in(names)}) ORDER BY id",
            [*companyids, *names],
        )
        found = []
        for row in rows:
            columns = dict(
                zip(
                    ("emailto", "emailtoother", "emailcc", "emailccother", "emailfrom", "emailfromother"),
                    row[7:13],
                    strict=True,
                )
            )
            columns.update(emailfromothername=row[13], disabledmanager=row[5], disabledsupervisor=row[6])
            try:
                template: Template | None = Template.from_properties(columns)
            except TemplateValueError:
                template = None
            found.append(
                TemplateRow(
                    id=int(row[0]),
                    companyid=int(row[1]),
                    name=str(row[2]),
                    lang=str(row[3]),
                    disabled=int(row[4]),
                    disabledmanager=int(row[5]),
                    disabledsupervisor=int(row[6]),
                    template=template,
                )
            )
        return found

    def company_users(self, userids: Collection[int], companyids: Collection[int]) -> list[CompanyUser]:
        """The users' own rows, and every company manager (managertype 1) who could be in one of
        their department chains: in a department of the company of one of their departments, or
        in one of `companyids` (to tell whether a user whose row is not here yet may have any)."""
        if not userids:
            return []
        cu, department = self._table["company_users"], self._table["department"]
        companies = f"companyid IN ({_in(companyids)}) OR " if companyids else ""
        rows = self._rows(
            f"SELECT id, userid, companyid, departmentid, managertype FROM `{cu}` "
            f"WHERE userid IN ({_in(userids)}) OR (managertype = 1 AND ({companies}departmentid IN ("
            f"SELECT d.id FROM `{department}` d WHERE d.company IN (SELECT own.company FROM `{department}` own "
            f"JOIN `{cu}` mine ON mine.departmentid = own.id WHERE mine.userid IN ({_in(userids)}))))) ORDER BY id",
            [*userids, *companyids, *userids],
        )
        return [CompanyUser(*(int(v) for v in row)) for row in rows]

    def departments(self, ids: Collection[int]) -> dict[int, Department]:
        """Every department of the companies `ids` belong to: their parent chains are among them
        unless a chain leaves the company."""
        if not ids:
            return {}
        department = self._table["department"]
        rows = self._rows(
            f"SELECT id, parent, company FROM `{department}` WHERE company IN "
            f"(SELECT company FROM `{department}` WHERE id IN ({_in(ids)}))",
            ids,
        )
        return {int(i): Department(int(i), int(parent or 0), int(company)) for i, parent, company in rows}

    def users(self, ids: Collection[int]) -> dict[int, UserRecord]:
        if not ids:
            return {}
        rows = self._rows(
            f"SELECT id, email, firstname, deleted, suspended, lang FROM `{self._table['user']}` "
            f"WHERE id IN ({_in(ids)})",
            ids,
        )
        return {
            int(i): UserRecord(int(i), str(email or ""), str(first or ""), bool(deleted), bool(suspended), str(lang))
            for i, email, first, deleted, suspended, lang in rows
        }

    def companies(self, ids: Collection[int]) -> dict[int, Company]:
        if not ids:
            return {}
        rows = self._rows(
            f"SELECT id, name, emailprofileid FROM `{self._table['company']}` WHERE id IN ({_in(ids)})", ids
        )
        return {int(i): Company(int(i), str(name), int(profile or 0)) for i, name, profile in rows}

    def profile_data(self, userids: Collection[int], fieldids: Collection[int]) -> dict[tuple[int, int], str]:
        if not userids or not fieldids:
            return {}
        rows = self._rows(
            f"SELECT userid, fieldid, data FROM `{self._table['user_info_data']}` "
            f"WHERE userid IN ({_in(userids)}) AND fieldid IN ({_in(fieldids)})",
            [*userids, *fieldids],
        )
        return {(int(u), int(f)): str(data) for u, f, data in rows}
