"""A Moodle/IOMAD-shaped database for the demo, the tests and the benchmarks: the real DDL of the
two watched tables, the neighbours IOMAD writes to, and user creation done the way IOMAD does it
(12 separate autocommit transactions per user, the outbox INSERT ~6 after the user INSERT)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phpserialize

# The reference DDL of the two watched tables (Moodle core's mdl_user, IOMAD 4.3's mdl_email).
REFERENCE_DDL = Path(__file__).with_name("moodle_schema.sql")
# IOMAD's tables that decide who else receives an outbox row (companies, departments, managers,
# profile fields, templates, config, scheduled tasks), as a real IOMAD 4.3.7 creates them.
IOMAD_DDL = Path(__file__).with_name("iomad_tables.sql")


def _ddl(path: Path, prefix: str) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    statements = [part.strip() for part in "\n".join(lines).split(";")]
    ddl = [s[s.index("CREATE TABLE") :] for s in statements if "CREATE TABLE" in s]
    return [d.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1).replace("mdl_", prefix) for d in ddl]


def watched_table_ddl(prefix: str = "mdl_") -> list[str]:
    """The two CREATE TABLE statements, for another table prefix if asked."""
    return _ddl(REFERENCE_DDL, prefix)


def iomad_table_ddl(prefix: str = "mdl_") -> list[str]:
    return _ddl(IOMAD_DDL, prefix)


NEIGHBOUR_DDL = (
    """CREATE TABLE IF NOT EXISTS {p}context (id BIGINT AUTO_INCREMENT PRIMARY KEY, contextlevel BIGINT NOT NULL,
       instanceid BIGINT NOT NULL, path VARCHAR(255) NULL, depth TINYINT NOT NULL DEFAULT 0) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS {p}local_report_user_logins (id BIGINT AUTO_INCREMENT PRIMARY KEY,
       userid BIGINT NOT NULL, created BIGINT NOT NULL, firstlogin BIGINT NULL, lastlogin BIGINT NULL,
       logincount BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS {p}user_preferences (id BIGINT AUTO_INCREMENT PRIMARY KEY, userid BIGINT NOT NULL,
       name VARCHAR(255) NOT NULL, value VARCHAR(1333) NOT NULL DEFAULT '') ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS {p}cache_flags (id BIGINT AUTO_INCREMENT PRIMARY KEY, flagtype VARCHAR(255) NOT NULL,
       name VARCHAR(255) NOT NULL, timemodified BIGINT NOT NULL, value LONGTEXT NOT NULL, expiry BIGINT NOT NULL)
       ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS {p}logstore_standard_log (id BIGINT AUTO_INCREMENT PRIMARY KEY,
       eventname VARCHAR(255) NOT NULL, component VARCHAR(100) NOT NULL, action VARCHAR(100) NOT NULL,
       userid BIGINT NOT NULL, relateduserid BIGINT NULL, other LONGTEXT NULL, timecreated BIGINT NOT NULL)
       ENGINE=InnoDB""",
)

SUBJECT = "A new on-line learning account has been created for you"


def create_schema(cursor: Any, prefix: str = "mdl_") -> None:
    for ddl in watched_table_ddl(prefix):
        cursor.execute(ddl)
    for ddl in NEIGHBOUR_DDL:
        cursor.execute(ddl.format(p=prefix))
    seed_iomad_site(cursor, prefix)


def seed_iomad_site(cursor: Any, prefix: str = "mdl_") -> None:
    """IOMAD's recipient tables with what a fresh install leaves in them: one company with its top
    department, the guest and the admin (the account the cron runs as), the support settings."""
    for ddl in iomad_table_ddl(prefix):
        cursor.execute(ddl)
    # One company with one top department, as IOMAD's installer and company form leave them.
    cursor.execute(
        f"INSERT IGNORE INTO {prefix}company (id, name, shortname, city, country) "
        "VALUES (1, 'Demo Academy', 'demo', 'Lisbon', 'PT')"
    )
    cursor.execute(
        f"INSERT IGNORE INTO {prefix}department (id, name, shortname, company, parent) "
        "VALUES (1, 'Demo Academy', 'demo', 1, 0)"
    )
    # The site settings a fresh Moodle install has: the support user IOMAD's task sends as (its
    # FromName) is named by them.
    cursor.execute(
        f"INSERT IGNORE INTO {prefix}config (name, value) VALUES ('supportemail', 'support@academy.example'), "
        "('supportname', 'Demo Academy'), ('lang', 'en'), ('siteadmins', '2')"
    )
    # Moodle's installer creates the guest (1) and the admin (2), whom the cron runs as.
    cursor.execute(
        f"INSERT IGNORE INTO {prefix}user (id, auth, confirmed, mnethostid, username, firstname, lastname, email, "
        "timecreated, timemodified) VALUES (1, 'manual', 1, 1, 'guest', 'Guest user', ' ', 'root@localhost', 0, 0), "
        "(2, 'manual', 1, 1, 'admin', 'Admin', 'User', 'admin@academy.example', 0, 0)"
    )


# The 22 properties of IOMAD's template object, in the order `queue_for_cron()` serializes them;
# the integer ones are flags IOMAD sets itself (serialized as i:), the rest come back from the
# database as strings.
_TEMPLATE_FIELDS = (
    "id", "companyid", "name", "lang", "subject", "body", "signature", "disabled", "disabledmanager",
    "disabledsupervisor", "emailto", "emailtoother", "emailcc", "emailccother", "emailfrom", "emailfromother",
    "emailreplyto", "emailreplytoother", "repeatperiod", "repeatvalue", "repeatday", "emailfromothername",
)  # fmt: skip
_INTEGER_FIELDS = frozenset(
    {"disabled", "disabledmanager", "disabledsupervisor", "repeatperiod", "repeatvalue", "repeatday"}
)


def iomad_headers(
    name: str = "user_create",
    *,
    template_id: int = 38,
    companyid: int = 1,
    header_lines: Sequence[str] = (),
    extra: dict[str, object] | None = None,
    **fields: str | int,
) -> str:
    """`mdl_email.headers` exactly as IOMAD's `queue_for_cron()` writes it: PHP `serialize()` of an
    array whose integer keys hold `To:`/`Cc:`/`reply-to:` strings and whose `template` key holds
    the template as a stdClass (see shared/reference/iomad-headers-examples.md). `fields` set
    template properties (emailtoother="a@b.example", disabledmanager=1, ...); `extra` adds keys
    such as `attachment`."""
    values: dict[str, str | int] = {
        "id": str(template_id),
        "companyid": str(companyid),
        "name": name,
        "lang": "en",
        "subject": f"Subject of the {name} template",
        "body": f"<p>Body of the {name} template with {{User_FirstName}} and {{User_Newpassword}}</p>",
    }
    values.update(fields)
    template = {key: values.get(key, 0 if key in _INTEGER_FIELDS else "") for key in _TEMPLATE_FIELDS}
    array: dict[object, object] = dict(enumerate(header_lines))
    array["template"] = phpserialize.phpobject("stdClass", template)
    array.update(extra or {})
    return bytes(phpserialize.dumps(array)).decode()


DEFAULT_HEADERS = iomad_headers()


def credential_body(username: str, password: str, firstname: str) -> str:
    # IOMAD's rendered template: HTML, `</br>` line breaks, the password not HTML-escaped.
    return (
        f"<p>Hi {firstname},</p><p>A new account has been created for you at 'Demo Academy'</br>"
        f"and you have been issued with a new temporary password.</br></br>Your current login information is now:</br>"
        f"username: {username}</br>password: {password}</br>(you will have to change your password when you login "
        f"for the first time)</br></br>To start using 'Demo Academy', login at https://moodle.example/login/</p>"
    )


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    email: str
    password: str
    firstname: str = "Ada"
    lastname: str = "Lovelace"
    companyid: int = 1
    suspended: int = 0
    template: str = "user_create"
    due_offset: int = 0
    sent: int | None = None
    departmentid: int = 1
    headers: str | None = DEFAULT_HEADERS


def make_users(count: int, *, start: int = 0, password: str = "Tmp#pass1&") -> list[NewUser]:
    return [
        NewUser(username=f"learner{n:06d}", email=f"learner{n:06d}@example.org", password=password)
        for n in range(start, start + count)
    ]


def _insert_user(c: Any, user: NewUser, prefix: str, now: int) -> int:
    c.execute(
        f"INSERT INTO {prefix}user (auth, confirmed, mnethostid, username, password, firstname, lastname, email, "
        "suspended, timecreated, timemodified) VALUES ('manual', 1, 1, %s, '', %s, %s, %s, %s, %s, %s)",
        (user.username, user.firstname, user.lastname, user.email, user.suspended, now, now),
    )
    return int(c.lastrowid)


def _insert_outbox(c: Any, user: NewUser, userid: int, prefix: str, now: int) -> int:
    """The outbox row IOMAD queues: rendered HTML body with the password, due now (or later)."""
    c.execute(
        f"INSERT INTO {prefix}email (templatename, modifiedtime, sent, subject, body, varsreplaced, companyid, "
        "courseid, userid, senderid, headers, due) VALUES (%s, %s, %s, %s, %s, 1, %s, 1, %s, -20, %s, %s)",
        (
            user.template,
            now,
            user.sent,
            SUBJECT,
            credential_body(user.username, user.password, user.firstname),
            user.companyid,
            userid,
            user.headers,
            now + user.due_offset,
        ),
    )
    return int(c.lastrowid)


def create_user_iomad(connection: Any, user: NewUser, prefix: str = "mdl_", now: int | None = None) -> tuple[int, int]:
    """One user the way IOMAD's `company_user::create()` writes it: every statement its own
    autocommit transaction. Returns (user id, outbox id)."""
    now = int(time.time()) if now is None else now
    p = prefix
    with connection.cursor() as c:
        userid = _insert_user(c, user, p, now)
        c.execute(f"INSERT INTO {p}context (contextlevel, instanceid, depth) VALUES (30, %s, 2)", (userid,))
        c.execute(f"UPDATE {p}context SET path = CONCAT('/1/', id) WHERE id = LAST_INSERT_ID()")
        c.execute(f"INSERT INTO {p}local_report_user_logins (userid, created) VALUES (%s, %s)", (userid, now))
        c.execute(
            f"INSERT INTO {p}user_preferences (userid, name, value) VALUES (%s, 'create_password', '1')", (userid,)
        )
        c.execute(
            f"INSERT INTO {p}cache_flags (flagtype, name, timemodified, value, expiry) "
            "VALUES ('userpreferenceschanged', %s, %s, '1', %s)",
            (str(userid), now, now + 7200),
        )
        outbox_id = _insert_outbox(c, user, userid, p, now)
        c.execute(
            f"INSERT INTO {p}user_preferences (userid, name, value) VALUES (%s, 'auth_forcepasswordchange', '1')",
            (userid,),
        )
        c.execute(f"UPDATE {p}user SET password = %s WHERE id = %s", ("$2y$10$" + "x" * 53, userid))
        c.execute(
            f"INSERT INTO {p}user_preferences (userid, name, value) VALUES (%s, 'iomad_temporary', 'enc')", (userid,)
        )
        c.execute(f"DELETE FROM {p}user_preferences WHERE userid = %s AND name = 'create_password'", (userid,))
        c.execute(
            f"INSERT INTO {p}company_users (companyid, userid, departmentid) VALUES (%s, %s, %s)",
            (user.companyid, userid, user.departmentid),
        )
    return userid, outbox_id


def create_users_bulk(
    connection: Any, users: Sequence[NewUser], prefix: str = "mdl_", now: int | None = None
) -> list[tuple[int, int]]:
    """A bulk import: every user and outbox row in ONE transaction."""
    now = int(time.time()) if now is None else now
    ids: list[tuple[int, int]] = []
    connection.begin()
    try:
        with connection.cursor() as c:
            for user in users:
                userid = _insert_user(c, user, prefix, now)
                ids.append((userid, _insert_outbox(c, user, userid, prefix, now)))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return ids


def unrelated_noise(connection: Any, rows: int, prefix: str = "mdl_") -> None:
    """Log rows like Moodle's logstore writes, in small autocommit transactions."""
    now = int(time.time())
    with connection.cursor() as c:
        for n in range(rows):
            c.execute(
                f"INSERT INTO {prefix}logstore_standard_log (eventname, component, action, userid, other, timecreated) "
                "VALUES ('\\\\core\\\\event\\\\course_viewed', 'core', 'viewed', %s, 'N;', %s)",
                (n, now),
            )


def outbox_ids(rows: Iterable[tuple[int, int]]) -> list[int]:
    return [outbox for _, outbox in rows]
