"""Configuration: parsed and validated before anything connects."""

from __future__ import annotations

import os
import re
import ssl
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cdc_offload.moodle_lock import task_lock_key

SinkKind = Literal["sqs", "ses"]
SuppressMode = Literal["delete", "mark-sent"]
MoodleLockMode = Literal["mysql", "none"]
ResumeMode = Literal["position", "gtid"]

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


class SettingsError(ValueError):
    """One configuration value is wrong. `option` is the flag a user would fix."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


def identifier(option: str, value: str) -> str:
    """Names we splice into SQL must be plain identifiers: they cannot be bound as parameters."""
    if not _IDENTIFIER.match(value):
        raise SettingsError(option, f"{value!r} is not a plain MySQL identifier (letters, digits, _ and $)")
    return value


def _no_key_password() -> bytes:
    return b""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS to one server. Any of `ca`, `cert` or `require` turns it on, and then it is mandatory: the
    server's certificate is verified (against `ca`, else the system's CAs), its name is checked
    unless `verify_identity` is off, and a connection that is not encrypted is refused. With none of
    them, PyMySQL's default applies (TLS if the server offers it, unverified): `check` warns."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = True
    require: bool = False

    @property
    def enabled(self) -> bool:
        return self.require or bool(self.ca or self.cert)

    def context(self) -> ssl.SSLContext:
        """A verifying client context: the CA file (or the system's CAs), the host name unless turned
        off, TLS 1.2 or newer, the client certificate when one is given. Built per connection, so a
        rotated certificate is picked up at the next connect. Raises OSError (ssl.SSLError is one)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.verify_identity
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert:
            # Never OpenSSL's interactive prompt: an encrypted key fails to load, clearly, at start-up.
            ctx.load_cert_chain(self.cert, keyfile=self.key, password=_no_key_password)
        return ctx


def tls_settings(
    side: str,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify_identity: bool | None = None,
    require: bool = False,
) -> TlsSettings:
    """`side` is `source` or `writer`: the prefix of the options a user would fix."""
    for name, path in (("ca", ca), ("cert", cert), ("key", key)):
        if path and not (Path(path).is_file() and os.access(path, os.R_OK)):
            raise SettingsError(f"--{side}-ssl-{name}", f"{path!r} is not a readable file")
    if key and not cert:
        raise SettingsError(f"--{side}-ssl-key", f"a client key needs its certificate: --{side}-ssl-cert")
    # None: TlsSettings' own default (on).
    checked = {} if verify_identity is None else {"verify_identity": verify_identity}
    tls = TlsSettings(ca=ca or None, cert=cert or None, key=key or None, require=require, **checked)
    if tls.enabled:
        try:
            tls.context()
        except OSError as error:
            # A file that is not PEM, or a key that does not match its certificate; never its content.
            detail = getattr(error, "reason", None) or error.strerror or type(error).__name__
            option = f"--{side}-ssl-cert" if cert else f"--{side}-ssl-ca"
            raise SettingsError(option, f"the TLS files cannot be loaded ({detail})") from None
    return tls


@dataclass(frozen=True, slots=True)
class Dsn:
    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)
    tls: TlsSettings = TlsSettings()

    def __str__(self) -> str:
        # The password never leaves this object through str() or repr().
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_dsn(option: str, url: str, password: str | None = None, tls: TlsSettings | None = None) -> Dsn:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise SettingsError(option, "expected mysql://user[:password]@host:port/database")
    if not parts.hostname or not parts.username:
        raise SettingsError(option, "the DSN needs a user and a host: mysql://user@host:3306/moodle")
    try:
        port = parts.port or 3306
    except ValueError:
        raise SettingsError(option, "the port is not a number") from None
    database = parts.path.lstrip("/")
    if database:
        identifier(option, database)
    secret = password if password is not None else urllib.parse.unquote(parts.password or "")
    return Dsn(
        host=parts.hostname,
        port=port,
        user=urllib.parse.unquote(parts.username),
        database=database,
        password=secret,
        tls=tls or TlsSettings(),
    )


def read_secret_file(option: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise SettingsError(option, f"cannot read the password file: {error.strerror}") from None


@dataclass(frozen=True, slots=True)
class TableNames:
    """Moodle's tables and the outbox's columns: IOMAD's names unless the site differs."""

    prefix: str = "mdl_"
    user: str = "user"
    outbox: str = "email"
    outbox_columns: tuple[tuple[str, str], ...] = ()

    @property
    def user_table(self) -> str:
        return identifier("--table-prefix", self.prefix + self.user)

    @property
    def outbox_table(self) -> str:
        return identifier("--table-prefix", self.prefix + self.outbox)

    def recipient_tables(self) -> tuple[str, ...]:
        """IOMAD's tables the recipient look-up reads (managers, departments, supervisors' profile
        field, templates' state, site config)."""
        return tuple(
            f"{self.prefix}{name}"
            for name in ("company", "company_users", "department", "user_info_data", "email_template", "config")
        )

    def column(self, logical: str) -> str:
        """The site's name for one of the outbox columns we use (id, userid, sent, ...)."""
        return dict(self.outbox_columns).get(logical, logical)


OUTBOX_LOGICAL_COLUMNS = (
    "id",
    "userid",
    "templatename",
    "sent",
    "due",
    "companyid",
    "subject",
    "body",
    "headers",
    "senderid",
)


def parse_column_overrides(option: str, pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    parsed: list[tuple[str, str]] = []
    for pair in pairs:
        logical, sep, actual = pair.partition("=")
        if not sep or logical not in OUTBOX_LOGICAL_COLUMNS:
            raise SettingsError(
                option, f"{pair!r}: expected LOGICAL=ACTUAL with LOGICAL one of {', '.join(OUTBOX_LOGICAL_COLUMNS)}"
            )
        parsed.append((logical, identifier(option, actual)))
    return tuple(parsed)


@dataclass(frozen=True, slots=True)
class SinkSettings:
    kind: SinkKind = "sqs"
    queue_url: str | None = None
    ses_from: str | None = None
    ses_configuration_set: str | None = None
    deadline: float = 10.0
    concurrency: int = 16
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    source: Dsn
    writer: Dsn
    sink: SinkSettings = SinkSettings()
    tables: TableNames = TableNames()
    templates: frozenset[str] = frozenset({"user_create"})
    state_schema: str = "cdc_offload"
    consumer: str = "default"
    server_id: int = 4_242_001
    pair_window: float = 30.0
    max_event_age: float = 45.0
    suppress: SuppressMode = "delete"
    resume: ResumeMode = "position"
    heartbeat: float = 1.0
    read_timeout: float = 10.0
    max_batch: int = 500
    checkpoint_interval: float = 1.0
    standby_poll: float = 1.0
    # Seconds the writer connection may stay silent before the server drops it and the consumer
    # lock with it (its session wait_timeout): how long a frozen leader keeps a standby waiting.
    # None: 30 s, or three AWS deadlines / standby polls if that is longer (see `lease_seconds`).
    lock_lease: float | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    # How far the web servers', the database's and this host's clocks may disagree (seconds):
    # `due` and the freshness guard allow this much.
    clock_skew: float = 5.0
    # Binlog bytes a row may wait for its partner whatever the timestamps say: how long at most
    # one row holds the checkpoint back (a time window alone trusts every timestamp).
    pair_window_bytes: int = 256 * 1024 * 1024
    # After SIGTERM, how long a commit the primary refused is retried before the process gives up.
    shutdown_grace: float = 20.0
    # The lock Moodle's cron holds while IOMAD's email task runs: "mysql" (Moodle's default lock
    # factory on MySQL/MariaDB) or "none" (a site whose $CFG->lock_factory is another one).
    moodle_lock: MoodleLockMode = "mysql"
    # Moodle's $CFG->dbname and $CFG->prefix, which name that lock. None: the writer DSN's database
    # and --table-prefix.
    moodle_lock_database: str | None = None
    moodle_lock_prefix: str | None = None
    # How long a round waits for that lock while the task holds it (the loop reads on meanwhile).
    moodle_lock_wait: float = 2.0

    def __post_init__(self) -> None:
        identifier("--state-schema", self.state_schema)
        self._check_windows()
        self._check_servers()
        self._check_sink()
        if self.lock_lease is not None and (
            self.lock_lease < 2 * self.sink.deadline or self.lock_lease < 2 * self.standby_poll
        ):
            raise SettingsError(
                "--lock-lease",
                "must be at least twice --aws-deadline and the standby poll: a busy leader must not lose it",
            )
        if self.max_batch < 1:
            raise SettingsError("--max-batch", "must be at least 1")
        if not self.templates:
            raise SettingsError("--template", "name at least one outbox template to offload")
        self._check_timing_options()

    def _check_windows(self) -> None:
        if self.pair_window <= 0:
            raise SettingsError("--pair-window", "must be a positive number of seconds")
        if self.max_event_age <= 0:
            raise SettingsError("--max-event-age", "must be a positive number of seconds")
        if self.pair_window >= self.max_event_age:
            raise SettingsError(
                "--pair-window",
                f"{self.pair_window:g}s is not below --max-event-age ({self.max_event_age:g}s): "
                "every paired row would already be too old to send",
            )
        if self.sink.deadline <= 0 or self.sink.deadline >= self.max_event_age:
            raise SettingsError("--aws-deadline", "must be positive and below --max-event-age")

    def _check_servers(self) -> None:
        if not 1 <= self.server_id < 2**32:
            raise SettingsError("--server-id", "must be between 1 and 4294967295 and unique among replicas")
        if self.heartbeat <= 0 or self.read_timeout < 2 * self.heartbeat:
            raise SettingsError("--read-timeout", "must be at least twice --heartbeat so an idle link is not cut")
        if not self.source.database:
            raise SettingsError("--source-dsn", "name the Moodle database: mysql://user@host:3306/moodle")
        if not self.writer.database:
            raise SettingsError("--writer-dsn", "name the Moodle database: mysql://user@host:3306/moodle")

    def _check_sink(self) -> None:
        if self.sink.kind == "sqs" and not self.sink.queue_url:
            raise SettingsError("--queue-url", "required with --sink sqs")
        if self.sink.kind == "ses" and not self.sink.ses_from:
            raise SettingsError("--from", "required with --sink ses (a verified sender address)")
        for option, value in (("--from", self.sink.ses_from), ("--configuration-set", self.sink.ses_configuration_set)):
            if value and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                # Either would end up in a mail header: one line, no control characters.
                raise SettingsError(option, "must be one line without control characters")

    def _check_timing_options(self) -> None:
        if self.moodle_lock_wait < 0:
            raise SettingsError("--moodle-lock-wait", "must be 0 or more seconds")
        if self.clock_skew < 0:
            raise SettingsError("--clock-skew", "must be 0 or more seconds")
        if self.pair_window_bytes < 64 * 1024:
            raise SettingsError("--pair-window-bytes", "must be at least 65536 (64 KiB of binlog)")
        if self.shutdown_grace < 0:
            raise SettingsError("--shutdown-grace", "must be 0 or more seconds")

    @property
    def lease_seconds(self) -> float:
        """The lock lease in force: `lock_lease`, or a default a busy leader cannot outlast."""
        if self.lock_lease is not None:
            return self.lock_lease
        return max(30.0, 3 * self.sink.deadline, 3 * self.standby_poll)

    @property
    def moodle_task_lock(self) -> str | None:
        """The GET_LOCK name of IOMAD's email task, or None when the site's locks are not MySQL's."""
        if self.moodle_lock == "none":
            return None
        database = self.moodle_lock_database or self.writer.database
        prefix = self.tables.prefix if self.moodle_lock_prefix is None else self.moodle_lock_prefix
        return task_lock_key(database, prefix)

    @property
    def lock_name(self) -> str:
        return f"cdc_offload.{self.state_schema}.{self.consumer}"


def field_default(owner: type, name: str) -> Any:
    """The default declared on one field of a settings dataclass: the one place it is written."""
    for declared in fields(owner):
        if declared.name == name:
            if declared.default is not MISSING:
                return declared.default
            if declared.default_factory is not MISSING:
                return declared.default_factory()
            raise LookupError(f"{owner.__name__}.{name} has no default")
    raise LookupError(f"{owner.__name__} has no field {name!r}")


# Each command-line option that sets a settings field, and that field: the option's default (in
# --help and when neither the flag nor its CDC_OFFLOAD_* variable is given) is the field's default,
# and `build_settings` leaves an absent option to that same default. `--metrics-port` is not here:
# `run` listens on 9108 by default, while Settings' None means "no HTTP server" (tests, `check`).
OPTION_FIELDS: dict[str, tuple[type, str]] = {
    "--server-id": (Settings, "server_id"),
    "--source-ssl-verify-identity": (TlsSettings, "verify_identity"),
    "--writer-ssl-verify-identity": (TlsSettings, "verify_identity"),
    "--state-schema": (Settings, "state_schema"),
    "--consumer": (Settings, "consumer"),
    "--table-prefix": (TableNames, "prefix"),
    "--user-table": (TableNames, "user"),
    "--outbox-table": (TableNames, "outbox"),
    "--sink": (SinkSettings, "kind"),
    "--template": (Settings, "templates"),
    "--pair-window": (Settings, "pair_window"),
    "--max-event-age": (Settings, "max_event_age"),
    "--suppress": (Settings, "suppress"),
    "--aws-deadline": (SinkSettings, "deadline"),
    "--aws-concurrency": (SinkSettings, "concurrency"),
    "--max-batch": (Settings, "max_batch"),
    "--heartbeat": (Settings, "heartbeat"),
    "--read-timeout": (Settings, "read_timeout"),
    "--resume": (Settings, "resume"),
    "--lock-lease": (Settings, "lock_lease"),
    "--standby-poll": (Settings, "standby_poll"),
    "--breaker-failures": (SinkSettings, "breaker_failures"),
    "--breaker-cooldown": (SinkSettings, "breaker_cooldown"),
    "--clock-skew": (Settings, "clock_skew"),
    "--pair-window-bytes": (Settings, "pair_window_bytes"),
    "--shutdown-grace": (Settings, "shutdown_grace"),
    "--moodle-lock": (Settings, "moodle_lock"),
    "--moodle-lock-database": (Settings, "moodle_lock_database"),
    "--moodle-lock-prefix": (Settings, "moodle_lock_prefix"),
    "--moodle-lock-wait": (Settings, "moodle_lock_wait"),
    "--metrics-host": (Settings, "metrics_host"),
}


def option_default(option: str, table: dict[str, tuple[type, str]] = OPTION_FIELDS) -> Any:
    """The default of one option, in the form click wants (a repeatable option's is a tuple)."""
    owner, name = table[option]
    value = field_default(owner, name)
    return tuple(sorted(value)) if isinstance(value, frozenset) else value
