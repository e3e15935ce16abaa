"""The busy-Moodle binlog of fast-path-measurements.md, written quickly.

20,000 transactions, each a logstore multi-row INSERT (1-5 rows) and a sessions UPDATE; half also a
cache-table INSERT, 30% also a user_lastaccess UPDATE; every 20th also creates a user (mdl_user +
mdl_email INSERT). The "login storm" variant adds a full-width mdl_user UPDATE to 30% of them.
Many transactions go to the server in one multi-statement round trip.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysql.constants import CLIENT

from cdc_offload.demo.moodle import REFERENCE_DDL, seed_iomad_site

SCHEMA_FILE = REFERENCE_DDL

EXTRA_TABLES = """
CREATE TABLE mdl_logstore_standard_log (
  id BIGINT(10) NOT NULL AUTO_INCREMENT,
  eventname VARCHAR(255) NOT NULL DEFAULT '',
  component VARCHAR(100) NOT NULL DEFAULT '',
  action VARCHAR(100) NOT NULL DEFAULT '',
  target VARCHAR(100) NOT NULL DEFAULT '',
  objecttable VARCHAR(50) NULL,
  objectid BIGINT(10) NULL,
  crud VARCHAR(1) NOT NULL DEFAULT '',
  edulevel TINYINT(1) NOT NULL,
  contextid BIGINT(10) NOT NULL,
  contextlevel BIGINT(10) NOT NULL,
  contextinstanceid BIGINT(10) NOT NULL,
  userid BIGINT(10) NOT NULL,
  courseid BIGINT(10) NULL,
  relateduserid BIGINT(10) NULL,
  anonymous TINYINT(1) NOT NULL DEFAULT 0,
  other LONGTEXT NULL,
  timecreated BIGINT(10) NOT NULL,
  origin VARCHAR(10) NULL,
  ip VARCHAR(45) NULL,
  realuserid BIGINT(10) NULL,
  PRIMARY KEY (id),
  KEY mdl_logsstanlog_tim_ix (timecreated)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE mdl_sessions (
  id BIGINT(10) NOT NULL AUTO_INCREMENT,
  state BIGINT(10) NOT NULL DEFAULT 0,
  sid VARCHAR(128) NOT NULL DEFAULT '',
  userid BIGINT(10) NOT NULL,
  sessdata LONGTEXT NULL,
  timecreated BIGINT(10) NOT NULL,
  timemodified BIGINT(10) NOT NULL,
  firstip VARCHAR(45) NULL,
  lastip VARCHAR(45) NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE mdl_cache_flags (
  id BIGINT(10) NOT NULL AUTO_INCREMENT,
  flagtype VARCHAR(255) NOT NULL DEFAULT '',
  name VARCHAR(255) NOT NULL DEFAULT '',
  timemodified BIGINT(10) NOT NULL DEFAULT 0,
  value LONGTEXT NOT NULL,
  expiry BIGINT(10) NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE mdl_user_lastaccess (
  id BIGINT(10) NOT NULL AUTO_INCREMENT,
  userid BIGINT(10) NOT NULL,
  courseid BIGINT(10) NOT NULL,
  timeaccess BIGINT(10) NOT NULL DEFAULT 0,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
"""

SESSIONS = 200
LASTACCESS = 500
BASE_USERS = 1000


@dataclass(frozen=True)
class Written:
    transactions: int
    watched_rows: int  # INSERTed rows on mdl_user + mdl_email


def connect(port: int, database: str | None = None) -> pymysql.Connection[Any]:
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password="",
        database=database,
        autocommit=True,
        charset="utf8mb4",
        client_flag=CLIENT.MULTI_STATEMENTS,
        max_allowed_packet=64 << 20,
    )


def run_script(connection: pymysql.Connection[Any], sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while cursor.nextset():
            pass


def create_schema(port: int, database: str) -> None:
    connection = connect(port)
    try:
        run_script(connection, f"CREATE DATABASE {database}")
        connection.select_db(database)
        run_script(connection, SCHEMA_FILE.read_text() + EXTRA_TABLES)
        # IOMAD's recipient tables as a fresh install has them: the sidecar reads who receives each row there.
        with connection.cursor() as cursor:
            seed_iomad_site(cursor)
        rows = ",".join(f"({i + 1}, 'sid{i}', 1, 1)" for i in range(SESSIONS))
        run_script(connection, f"INSERT INTO mdl_sessions (userid, sid, timecreated, timemodified) VALUES {rows}")
        rows = ",".join(f"({i + 1}, 1, 0)" for i in range(LASTACCESS))
        run_script(connection, f"INSERT INTO mdl_user_lastaccess (userid, courseid, timeaccess) VALUES {rows}")
        users = ",".join(
            f"('base{i}', 'First{i}', 'Last{i}', 'base{i}@example.org', 'Description {i}')" for i in range(BASE_USERS)
        )
        run_script(
            connection, f"INSERT INTO mdl_user (username, firstname, lastname, email, description) VALUES {users}"
        )
    finally:
        connection.close()


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _transaction(rng: random.Random, number: int, now: int, login_storm: bool) -> tuple[str, int]:
    parts = ["BEGIN"]
    watched = 0
    rows = []
    for _ in range(rng.randint(1, 5)):
        other = json.dumps({"courseid": rng.randint(1, 500), "relateduser": rng.randint(1, 9999), "note": "x" * 40})
        rows.append(
            f"('\\\\core\\\\event\\\\course_viewed', 'core', 'viewed', 'course', NULL, NULL, 'r', 2, "
            f"{rng.randint(1, 9999)}, 50, {rng.randint(1, 500)}, {rng.randint(1, 9999)}, {rng.randint(1, 500)}, "
            f"NULL, 0, {_quote(other)}, {now}, 'web', '10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}', NULL)"
        )
    parts.append(
        "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, "
        "edulevel, contextid, contextlevel, contextinstanceid, userid, courseid, relateduserid, anonymous, other, "
        "timecreated, origin, ip, realuserid) VALUES " + ",".join(rows)
    )
    parts.append(f"UPDATE mdl_sessions SET timemodified = {now + number} WHERE id = {rng.randint(1, SESSIONS)}")
    if rng.random() < 0.5:
        parts.append(
            "INSERT INTO mdl_cache_flags (flagtype, name, timemodified, value, expiry) VALUES "
            f"('userpreferenceschanged', '{rng.randint(1, 9999)}', {now}, '1', {now + 7200})"
        )
    if rng.random() < 0.3:
        parts.append(
            f"UPDATE mdl_user_lastaccess SET timeaccess = {now + number} WHERE id = {rng.randint(1, LASTACCESS)}"
        )
    if login_storm and rng.random() < 0.3:
        parts.append(
            f"UPDATE mdl_user SET lastaccess = {now + number}, lastlogin = {now}, currentlogin = {now + number}, "
            f"lastip = '10.1.{rng.randint(0, 255)}.{rng.randint(0, 255)}' WHERE id = {rng.randint(1, BASE_USERS)}"
        )
    if number % 20 == 0:
        parts.append(
            "INSERT INTO mdl_user (auth, confirmed, mnethostid, username, firstname, lastname, email, timecreated) "
            f"VALUES ('manual', 1, 1, 'new{number}', 'Émile', 'Zoë 😀', 'new{number}@example.org', {now})"
        )
        parts.append(
            "INSERT INTO mdl_email (templatename, modifiedtime, subject, body, companyid, userid, due) VALUES "
            f"('user_create', {now}, 'New account', {_quote('<p>Your password is Pw' + str(number) + '!</p>' * 20)}, "
            f"1, LAST_INSERT_ID(), {now})"
        )
        watched += 2
    parts.append("COMMIT")
    return ";\n".join(parts) + ";\n", watched


def write_busy(port: int, database: str, transactions: int, *, login_storm: bool, seed: int = 7) -> Written:
    rng = random.Random(seed)
    now = 1_700_000_000
    connection = connect(port, database)
    watched = 0
    try:
        batch: list[str] = []
        for number in range(1, transactions + 1):
            sql, rows = _transaction(rng, number, now, login_storm)
            watched += rows
            batch.append(sql)
            if len(batch) == 200:
                run_script(connection, "".join(batch))
                batch = []
        if batch:
            run_script(connection, "".join(batch))
    finally:
        connection.close()
    return Written(transactions, watched)
