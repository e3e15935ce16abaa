"""The `cdc-offload` command. Every option also reads `CDC_OFFLOAD_<OPTION>` (shown in --help)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from cdc_offload import __version__, logs
from cdc_offload.deliver.settings import (
    CONSUMER_OPTION_FIELDS,
    DELIVER_METRICS_PORT,
    EVENTS_CONCURRENCY,
    EVENTS_METRICS_PORT,
    ConsumerSettings,
    DeliverSettings,
)
from cdc_offload.settings import (
    OPTION_FIELDS,
    Settings,
    SettingsError,
    SinkSettings,
    TableNames,
    TlsSettings,
    option_default,
    parse_column_overrides,
    parse_dsn,
    read_secret_file,
    tls_settings,
)

if TYPE_CHECKING:
    from cdc_offload.model import Position
    from cdc_offload.operations import ReplayRange

F = TypeVar("F", bound=Callable[..., Any])


def option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option whose environment variable is CDC_OFFLOAD_<LONG NAME>, shown in --help."""
    long_name = next(n for n in names if n.startswith("--")).lstrip("-")
    kwargs.setdefault("envvar", "CDC_OFFLOAD_" + long_name.upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def _options_of(table: dict[str, tuple[type, str]]) -> Callable[..., Callable[[F], F]]:
    """`option`, with the default (shown in --help) of the settings field `table` names for it."""

    def declare(*names: str, **kwargs: Any) -> Callable[[F], F]:
        flag = next(n for n in names if n.startswith("--")).split("/")[0]
        return option(*names, default=option_default(flag, table), show_default=True, **kwargs)

    return declare


setting = _options_of(OPTION_FIELDS)


def _compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _tls_options(side: str, server: str) -> list[Callable[[F], F]]:
    """TLS to one server: --SIDE-ssl-ca/-cert/-key, --SIDE-ssl-verify-identity, --SIDE-require-tls."""
    path = click.Path(dir_okay=False)
    return [
        option(f"--{side}-ssl-ca", type=path, help=f"CA certificate (PEM) that signed {server}'s; turns TLS on."),
        option(f"--{side}-ssl-cert", type=path, help="Client certificate (PEM), for an account that REQUIREs X509."),
        option(f"--{side}-ssl-key", type=path, help="Private key (PEM, unencrypted) of the client certificate."),
        setting(
            f"--{side}-ssl-verify-identity/--no-{side}-ssl-verify-identity",
            envvar=f"CDC_OFFLOAD_{side.upper()}_SSL_VERIFY_IDENTITY",
            help="With TLS on: the certificate must name the DSN's host.",
        ),
        option(
            f"--{side}-require-tls",
            is_flag=True,
            help=f"Refuse a connection that is not encrypted (verified against the system CAs unless --{side}-ssl-ca).",
        ),
    ]


source_options = _compose(
    option("--source-dsn", help="The replica to read the binlog from: mysql://user@host:3306/moodle."),
    option("--source-password", help="Password of the reader (better: the env var or --source-password-file)."),
    option("--source-password-file", type=click.Path(dir_okay=False), help="File holding the reader's password."),
    setting("--server-id", type=int, help="Our replica id: unique per server."),
    *_tls_options("source", "the replica"),
)
writer_options = _compose(
    option("--writer-dsn", help="The primary to suppress on and keep state in: mysql://user@host:3306/moodle."),
    option("--writer-password", help="Password of the writer (better: the env var or --writer-password-file)."),
    option("--writer-password-file", type=click.Path(dir_okay=False), help="File holding the writer's password."),
    *_tls_options("writer", "the primary"),
    setting("--state-schema", help="Schema of our ledger and checkpoint."),
    setting("--consumer", help="Name of this consumer (checkpoint and lock)."),
    setting("--table-prefix", help="Moodle's table prefix."),
    setting("--user-table", help="User table name, without the prefix."),
    setting("--outbox-table", help="Outbox table name, without the prefix."),
    option(
        "--outbox-column",
        multiple=True,
        help="LOGICAL=ACTUAL for an outbox column named differently (e.g. userid=user_id). Repeatable.",
    ),
)


def _sender_option(*names: str) -> Callable[[F], F]:
    # `replay` has its own --from (a binlog position), so there the sender is only --ses-from;
    # both spellings read CDC_OFFLOAD_FROM.
    return option(*names, "ses_from", envvar="CDC_OFFLOAD_FROM", help="Verified sender address (with --sink ses).")


sink_options = _compose(
    setting("--sink", type=click.Choice(["sqs", "ses"]), help="Where emails go."),
    option("--queue-url", help="SQS queue URL (with --sink sqs); a .fifo queue gets dedup ids."),
    option("--configuration-set", help="SES configuration set (optional)."),
)
tuning_options = _compose(
    setting(
        "--template",
        multiple=True,
        help="Outbox templates to offload. Repeatable.",
    ),
    setting("--pair-window", type=float, help="Seconds to pair a user and its email."),
    setting("--max-event-age", type=float, help="Older events are left to Moodle."),
    setting(
        "--suppress",
        type=click.Choice(["delete", "mark-sent"]),
        help="How the queued copy is suppressed after AWS accepted ours.",
    ),
    setting("--aws-deadline", type=float, help="Seconds AWS gets per batch."),
    setting("--aws-concurrency", type=int, help="Parallel calls to AWS."),
    setting("--max-batch", type=int, help="Most jobs per dispatch and commit."),
    setting("--heartbeat", type=float, help="Binlog heartbeat interval, seconds."),
    setting("--read-timeout", type=float, help="Binlog socket read timeout."),
    setting(
        "--resume",
        type=click.Choice(["position", "gtid"]),
        help="Resume by binlog file/offset, or by GTID (follows a replica promotion).",
    ),
    setting(
        "--lock-lease",
        type=float,
        help="Seconds a frozen leader keeps the consumer lock before a standby may take over "
        "(default: 30, or three AWS deadlines if longer).",
    ),
    setting("--standby-poll", type=float, help="How often a standby tries the lock."),
    setting("--breaker-failures", type=int, help="Failed AWS rounds in a row that open it."),
    setting("--breaker-cooldown", type=float, help="Seconds the breaker stays open."),
    setting(
        "--clock-skew",
        type=float,
        help="Seconds the web servers', the database's and this host's clocks may disagree.",
    ),
    setting(
        "--pair-window-bytes",
        type=int,
        help="Binlog bytes a row may wait for its partner, whatever its timestamps say.",
    ),
    setting(
        "--shutdown-grace",
        type=float,
        help="After SIGTERM, seconds to retry a commit the primary refused before exiting non-zero.",
    ),
    setting(
        "--moodle-lock",
        type=click.Choice(["mysql", "none"]),
        help="Claim rows under the MySQL lock Moodle's cron holds while IOMAD's email task runs; 'none' for a site "
        "whose $CFG->lock_factory is not the database's (duplicates against the task are then possible, counted).",
    ),
    setting("--moodle-lock-database", help="Moodle's $CFG->dbname, which names that lock (default: the writer DSN's)."),
    setting("--moodle-lock-prefix", help="Moodle's $CFG->prefix, which names that lock (default: --table-prefix)."),
    setting(
        "--moodle-lock-wait",
        type=float,
        help="Seconds a round waits for that lock while the email task holds it.",
    ),
)
pipeline_options = _compose(sink_options, _sender_option("--from", "--ses-from"), tuning_options)
replay_pipeline_options = _compose(sink_options, _sender_option("--ses-from"), tuning_options)
observability_options = _compose(
    option("--metrics-port", type=int, default=9108, show_default=True, help="Port of /metrics, /healthz, ..."),
    setting("--metrics-host", help="Address the HTTP server binds."),
    option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
    ),
)


def _tls(side: str, params: dict[str, Any]) -> TlsSettings:
    return tls_settings(
        side,
        ca=params.get(f"{side}_ssl_ca"),
        cert=params.get(f"{side}_ssl_cert"),
        key=params.get(f"{side}_ssl_key"),
        verify_identity=params.get(f"{side}_ssl_verify_identity"),
        require=bool(params.get(f"{side}_require_tls")),
    )


def _password(option_name: str, direct: str | None, file: str | None) -> str | None:
    if file:
        return read_secret_file(option_name + "-file", file)
    return direct


def _given(params: dict[str, Any], **fields: str) -> dict[str, Any]:
    """field=param pairs for the options `params` holds a value for: an absent one (None, or an empty
    repeatable option) is left to the field's own default, which is also the option's."""
    return {name: params[key] for name, key in fields.items() if params.get(key) not in (None, ())}


def _given_fields(params: dict[str, Any], owner: type) -> dict[str, Any]:
    """`owner`'s fields whose options `params` holds a value for (OPTION_FIELDS names them)."""
    mine = ((option, name) for option, (cls, name) in OPTION_FIELDS.items() if cls is owner)
    return _given(params, **{name: option.lstrip("-").replace("-", "_") for option, name in mine})


def build_settings(params: dict[str, Any], *, need_source: bool = True, need_sink: bool = True) -> Settings:
    """Options → validated `Settings`; a wrong value is a `click.BadParameter` naming the option."""
    try:
        writer_url = params.get("writer_dsn")
        if not writer_url:
            raise SettingsError("--writer-dsn", "required: mysql://user@primary:3306/moodle")
        writer = parse_dsn(
            "--writer-dsn",
            writer_url,
            _password("--writer-password", params.get("writer_password"), params.get("writer_password_file")),
            _tls("writer", params),
        )
        source_url = params.get("source_dsn")
        if need_source and not source_url:
            raise SettingsError("--source-dsn", "required: mysql://reader@replica:3306/moodle")
        source = (
            parse_dsn(
                "--source-dsn",
                source_url,
                _password("--source-password", params.get("source_password"), params.get("source_password_file")),
                _tls("source", params),
            )
            if source_url
            else writer
        )
        sink = SinkSettings(
            queue_url=params.get("queue_url") if need_sink else params.get("queue_url") or "unused",
            ses_from=params.get("ses_from") if need_sink else params.get("ses_from") or "unused@example.invalid",
            ses_configuration_set=params.get("configuration_set"),
            **_given_fields(params, SinkSettings),
        )
        if sink.concurrency < 1:
            raise SettingsError("--aws-concurrency", "must be at least 1")
        tables = TableNames(
            outbox_columns=parse_column_overrides("--outbox-column", tuple(params.get("outbox_column") or ())),
            **_given_fields(params, TableNames),
        )
        tables.user_table, tables.outbox_table  # noqa: B018 - validates the identifiers now
        given = _given_fields(params, Settings)
        if "templates" in given:
            given["templates"] = frozenset(given["templates"])
        return Settings(
            source=source, writer=writer, sink=sink, tables=tables, metrics_port=params.get("metrics_port"), **given
        )
    except SettingsError as error:
        raise click.BadParameter(error.problem, param_hint=f"'{error.option}'") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="cdc-offload")
def main() -> None:
    """Offload Moodle/IOMAD credential emails to AWS, read from the binlog, without losing one."""


def _with_logging(function: F) -> F:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logs.configure(kwargs.get("log_level") or os.environ.get("CDC_OFFLOAD_LOG_LEVEL", "INFO"))
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@main.command()
@writer_options
@option("--source-dsn", help="Used only to print the reader's GRANTs for the right database.")
@option("--reader-user", default="cdc_reader", show_default=True, help="Reader account name in the GRANTs.")
@option("--writer-user", default="cdc_writer", show_default=True, help="Writer account name in the GRANTs.")
def init(**params: Any) -> None:
    """Create the state schema (idempotent) and print the least-privilege GRANTs to run."""
    from cdc_offload.store import Store, StoreError, grant_statements

    settings = build_settings(params, need_source=False, need_sink=False)
    store = Store(settings)
    try:
        store.connect()
        store.ensure_schema()
    except (StoreError, Exception) as error:  # noqa: BLE001 - one clear line, not a traceback
        raise click.ClickException(f"cannot create the state schema: {_describe(error)}") from None
    finally:
        store.close()
    click.echo(f"state schema `{settings.state_schema}` is ready on {settings.writer}")
    click.echo("-- least-privilege accounts (run as an administrator; put real passwords in):")
    for statement in grant_statements(settings, params["reader_user"], params["writer_user"]):
        click.echo(statement)


def _describe(error: BaseException) -> str:
    from cdc_offload.mysql_errors import describe

    return describe(error)


def _print_checks(results: list[Any]) -> bool:
    ok = True
    for result in results:
        if result.ok and not result.warning:
            click.echo(f"ok    {result.name}")
        elif result.ok:
            click.echo(f"warn  {result.name}: {result.problem}")
        else:
            ok = False
            click.echo(f"FAIL  {result.name}: {result.problem}\n      fix: {result.fix}")
    return ok


def _log_checks(results: list[Any]) -> bool:
    """The same results as JSON log lines, for `run` (whose stdout is a log stream)."""
    for result in results:
        if not result.ok:
            logs.error("preflight_failed", check=result.name, problem=result.problem, fix=result.fix)
        elif result.warning:
            logs.warning("preflight_warning", check=result.name, problem=result.problem)
        else:
            logs.info("preflight_ok", check=result.name)
    return all(result.ok for result in results)


def gather_checks(settings: Settings) -> list[Any]:
    from cdc_offload.preflight import moodle_lock_check, source_checks, writer_checks
    from cdc_offload.store import Store, StoreError

    store = Store(settings)
    saved = None
    try:
        store.connect()
        present = store.schema_present()
        saved = store.load_checkpoint() if present else None
    except StoreError:
        present = False
    finally:
        store.close()
    results = writer_checks(settings, lambda: present)
    results += source_checks(settings, saved)
    results.append(moodle_lock_check(settings))
    return results


@main.command()
@source_options
@writer_options
@pipeline_options
def check(**params: Any) -> None:
    """Preflight against the real servers: each check prints ok, or the problem and the fix."""
    # A missing AWS setting is one FAIL line among the database checks, not a refusal to check.
    settings = build_settings(params, need_sink=False)
    if not _print_checks(gather_checks(settings) + sink_setting_checks(params)):
        sys.exit(1)


def sink_setting_checks(params: dict[str, Any]) -> list[Any]:
    from cdc_offload.check_result import CheckResult

    sink = params.get("sink") or "sqs"
    if sink == "sqs" and not params.get("queue_url"):
        return [
            CheckResult(
                "AWS setting",
                False,
                "no SQS queue URL is set (required with --sink sqs)",
                "give --queue-url (or CDC_OFFLOAD_QUEUE_URL) the queue's URL, e.g. "
                "https://sqs.eu-west-1.amazonaws.com/123456789012/credential-emails.fifo",
            )
        ]
    if sink == "ses" and not params.get("ses_from"):
        return [
            CheckResult(
                "AWS setting",
                False,
                "no sender address is set (required with --sink ses)",
                "give --from (or CDC_OFFLOAD_FROM) an address SES has verified",
            )
        ]
    return [CheckResult("AWS setting", True)]


@main.command()
@source_options
@writer_options
@pipeline_options
@observability_options
@option("--skip-checks", is_flag=True, help="Start without the preflight checks (not recommended).")
@option(
    "--fail-closed-linger",
    type=float,
    default=60.0,
    show_default=True,
    help="After refusing to go on, keep /metrics up this long (cdc_offload_fail_closed=1) before exiting.",
)
@_with_logging
def run(**params: Any) -> None:
    """Tail the binlog and offload credential emails until SIGTERM (which drains and commits)."""
    from cdc_offload.runtime import run_forever

    settings = build_settings(params)

    def preflight() -> bool:
        if params.get("skip_checks") or _log_checks(gather_checks(settings)):
            return True
        logs.error("refusing_to_start", hint="fix the problems above; Moodle keeps sending meanwhile")
        return False

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logs.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sys.exit(run_forever(settings, stop, preflight, linger=params["fail_closed_linger"]))


@main.command()
def demo() -> None:
    """The whole flow on a throwaway MariaDB and an in-process AWS stand-in: no set-up needed."""
    from cdc_offload.demo import run_demo

    sys.exit(run_demo(echo=click.echo))


def _json_or_table(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json or not sys.stdout.isatty():
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    widths = {c: max([len(c)] + [len(str(r.get(c) or "")) for r in rows]) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c) or "").ljust(widths[c]) for c in columns))


@main.command()
@writer_options
@option("--user", "userid", type=int, help="The Moodle user id to look up.")
@option("--since", help="Only rows handled at or after this UTC time (YYYY-MM-DD[ HH:MM:SS]).")
@option(
    "--status",
    type=click.Choice(
        ["offloaded", "raced", "fallback", "skipped", "stale", "claimed", "uncertain", "duplicate_observed"]
    ),
)
@option("--limit", type=int, default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON output (the default when not on a terminal).")
def ledger(**params: Any) -> None:
    """Did user N get their email? What happened to each outbox row, from our ledger."""
    import dataclasses

    from cdc_offload.delivery_ledger import recipients_of
    from cdc_offload.store import ledger_query

    if params.get("userid") is None and not params.get("since"):
        raise click.UsageError("give --user ID or --since TIME")
    settings = build_settings(params, need_source=False, need_sink=False)
    try:
        entries = ledger_query(
            settings.writer,
            settings.state_schema,
            userid=params.get("userid"),
            since=params.get("since"),
            status=params.get("status"),
            limit=params["limit"],
        )
    except Exception as error:  # noqa: BLE001 - one clear line
        raise click.ClickException(f"cannot read the ledger: {_describe(error)}") from None
    rows: list[dict[str, Any]] = [dataclasses.asdict(e) for e in entries]
    try:
        copies = recipients_of(settings.writer, settings.state_schema, [e.outbox_id for e in entries])
    except Exception as error:  # noqa: BLE001 - one clear line
        raise click.ClickException(f"cannot read the ledger's recipients: {_describe(error)}") from None
    for row in rows:
        row["recipients"] = [dataclasses.asdict(c) for c in copies if c.outbox_id == row["outbox_id"]]
    if params["as_json"] or not sys.stdout.isatty():
        _json_or_table(rows, True, ())
        return
    # On a terminal: each row, then one line per recipient with SES's word on it.
    table: list[dict[str, Any]] = []
    for row in rows:
        table.append(row)
        table.extend(
            {
                "outbox_id": f"  #{c['recipient_index']} {c['kind']}",
                "status": c["status"],
                "reason": c["delivery"] or "",
                "message_id": c["ses_message_id"],
                "userid": c["address"],
                "handled_at": c["delivery_at"],
            }
            for c in row["recipients"]
        )
    _json_or_table(
        table, False, ("outbox_id", "userid", "status", "reason", "sink", "message_id", "event_time", "handled_at")
    )


@main.group()
def position() -> None:
    """Show or move the saved binlog position (refused while another instance is active)."""


@position.command("show")
@writer_options
def position_show(**params: Any) -> None:
    from cdc_offload.operations import show_position

    settings = build_settings(params, need_source=False, need_sink=False)
    saved = show_position(settings)
    if saved is None:
        click.echo("no checkpoint yet: the first `run` starts at the server's current end of binlog")
        return
    click.echo(f"{saved.position}" + (f"  gtid {saved.gtid}" if saved.gtid else ""))


@position.command("set")
@source_options
@writer_options
@click.argument("file_offset", required=False)
@option("--gtid", "gtid", help="Resume by this GTID state instead (e.g. 0-1-4711).")
@option("--now", "now", is_flag=True, help="The server's current end of binlog.")
def position_set(**params: Any) -> None:
    """Set the position to FILE:OFFSET, --gtid G, or --now. Rows skipped over are Moodle's."""
    from cdc_offload.model import Checkpoint, Position
    from cdc_offload.operations import OperationRefused, set_position
    from cdc_offload.source import current_end

    chosen = [bool(params.get("file_offset")), bool(params.get("gtid")), bool(params.get("now"))]
    if sum(chosen) != 1:
        raise click.UsageError("give exactly one of FILE:OFFSET, --gtid G or --now")
    settings = build_settings(params, need_source=bool(params.get("now")), need_sink=False)
    if params.get("now"):
        checkpoint = current_end(settings.source)
    elif params.get("gtid"):
        saved = Checkpoint(Position("", 4), gtid=params["gtid"])
        checkpoint = saved
    else:
        try:
            checkpoint = Checkpoint(Position.parse(params["file_offset"]))
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="'FILE:OFFSET'") from None
    try:
        set_position(settings, checkpoint)
    except OperationRefused as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"position set to {checkpoint.position}" + (f" gtid {checkpoint.gtid}" if checkpoint.gtid else ""))


@main.command()
@source_options
@writer_options
@replay_pipeline_options
@option(
    "--from",
    "from_position",
    envvar="CDC_OFFLOAD_REPLAY_FROM",
    required=True,
    help="FILE:OFFSET to start at (a transaction boundary).",
)
@option(
    "--to",
    "to_position",
    envvar="CDC_OFFLOAD_REPLAY_TO",
    help="FILE:OFFSET to stop at (default: the current end of binlog).",
)
@option("--dry-run", is_flag=True, help="Send nothing, write nothing: print what would happen.")
@option("--ignore-age", is_flag=True, help="Send rows older than --max-event-age too (Moodle may have sent them!).")
def replay(**params: Any) -> None:
    """Reprocess a stretch of binlog with the live guards; prints the outcome per status/reason."""
    from cdc_offload.model import Position
    from cdc_offload.operations import OperationRefused, plan_replay
    from cdc_offload.operations import replay as run_replay
    from cdc_offload.session import RunMode

    settings = build_settings(params)
    try:
        start = Position.parse(params["from_position"])
        end = Position.parse(params["to_position"]) if params.get("to_position") else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--from/--to'") from None
    try:
        span, sizes = plan_replay(settings, start, end)
        with contextlib.ExitStack() as stack:
            on_progress = _replay_progress(stack, span, sizes)
            mode = RunMode(ignore_age=params["ignore_age"], stop_at_end=True, on_progress=on_progress)
            tally = run_replay(settings, span, mode, dry_run=params["dry_run"])
    except OperationRefused as error:
        raise click.ClickException(str(error)) from None
    verb = "would be" if params["dry_run"] else "were"
    click.echo(
        f"replayed {span.start} .. {span.end}{' (dry run: nothing sent, nothing written)' if params['dry_run'] else ''}"
    )
    click.echo(f"already done (in the ledger): {tally.already_done}")
    for (status, reason), count in sorted(tally.outcomes.items()):
        click.echo(f"{count:>7}  {verb} {status} ({reason})")


def _replay_progress(
    stack: contextlib.ExitStack[bool | None], span: ReplayRange, sizes: dict[str, int]
) -> Callable[[Position], None]:
    """A progress bar on a terminal; a line every 10% otherwise (a log, a pipe)."""
    if sys.stdout.isatty():
        bar = stack.enter_context(click.progressbar(length=span.total_bytes, label="replaying", show_pos=True))
        shown = [0]

        def advance(at: Position) -> None:
            done = span.done_bytes(at, sizes)
            bar.update(done - shown[0])
            shown[0] = done

        return advance
    reported = [-1]

    def report(at: Position) -> None:
        percent = 100 * span.done_bytes(at, sizes) // max(1, span.total_bytes)
        if percent >= reported[0] + 10:
            reported[0] = percent
            click.echo(f"replaying: {percent}% ({at})")

    return report


# -- the cloud side: `deliver` (SQS → SES) and `events` (SES's notifications → the ledger) --------
consumer_setting = _options_of(CONSUMER_OPTION_FIELDS)
ledger_writer_options = _compose(
    option("--writer-dsn", help="The primary holding the state schema (the ledger): mysql://user@host:3306/moodle."),
    option("--writer-password", help="Password of the writer (better: the env var or --writer-password-file)."),
    option("--writer-password-file", type=click.Path(dir_okay=False), help="File holding the writer's password."),
    *_tls_options("writer", "the primary"),
    consumer_setting("--state-schema", help="Schema of our ledger and checkpoint."),
)


def _consumer_options(default_port: int, default_concurrency: int | None = None) -> Callable[[F], F]:
    """`default_concurrency`: None for ConsumerSettings' own (deliver's)."""
    concurrency = (
        consumer_setting("--concurrency", type=int, help="Threads polling the queue.")
        if default_concurrency is None
        else option(
            "--concurrency", type=int, default=default_concurrency, show_default=True, help="Threads polling the queue."
        )
    )
    return _compose(
        option("--queue-url", required=True, help="The SQS queue to consume (give it a redrive policy)."),
        ledger_writer_options,
        concurrency,
        consumer_setting("--wait-seconds", type=int, help="SQS long poll per receive (0-20)."),
        consumer_setting(
            "--visibility-timeout", type=int, help="Seconds a received message stays hidden from the other workers."
        ),
        consumer_setting(
            "--retry-delay",
            type=int,
            help="Seconds before a message that could not be finished comes back (doubling per receive, max 900).",
        ),
        option("--metrics-port", type=int, default=default_port, show_default=True, help="Port of /metrics, /healthz."),
        consumer_setting("--metrics-host", help="Address the HTTP server binds."),
        option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default="INFO",
            show_default=True,
        ),
    )


def build_consumer_settings(params: dict[str, Any]) -> ConsumerSettings:
    try:
        writer_url = params.get("writer_dsn")
        if not writer_url:
            raise SettingsError("--writer-dsn", "required: the ledger is in the state schema on the primary")
        writer = parse_dsn(
            "--writer-dsn",
            writer_url,
            _password("--writer-password", params.get("writer_password"), params.get("writer_password_file")),
            _tls("writer", params),
        )
        return ConsumerSettings(
            queue_url=params["queue_url"],
            writer=writer,
            metrics_port=params.get("metrics_port"),
            **_given(
                params,
                state_schema="state_schema",
                concurrency="concurrency",
                wait_seconds="wait_seconds",
                visibility_timeout="visibility_timeout",
                retry_delay="retry_delay",
                metrics_host="metrics_host",
            ),
        )
    except SettingsError as error:
        raise click.BadParameter(error.problem, param_hint=f"'{error.option}'") from None


def build_deliver_settings(params: dict[str, Any]) -> DeliverSettings:
    consumer = build_consumer_settings(params)
    try:
        return DeliverSettings(
            consumer=consumer,
            sender=params["ses_from"],
            **_given(
                params,
                configuration_set="configuration_set",
                send_rate="send_rate",
                send_attempts="send_attempts",
                quota_pause="quota_pause",
            ),
        )
    except SettingsError as error:
        raise click.BadParameter(error.problem, param_hint=f"'{error.option}'") from None


def _until_sigterm(run: Callable[[threading.Event], int]) -> None:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logs.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sys.exit(run(stop))


@main.command()
@_consumer_options(DELIVER_METRICS_PORT)
@option("--from", "ses_from", envvar="CDC_OFFLOAD_FROM", required=True, help="Verified sender (the site's no-reply).")
@consumer_setting("--configuration-set", help="SES configuration set: where SES publishes the events `events` records.")
@consumer_setting(
    "--send-rate", type=float, help="Sends per second for all threads (default: the account's MaxSendRate)."
)
@consumer_setting("--send-attempts", type=int, help="Tries of one copy when SES throttles.")
@consumer_setting(
    "--quota-pause", type=float, help="Seconds to hold every message back once SES's 24-hour quota is used up."
)
@_with_logging
def deliver(**params: Any) -> None:
    """Send the sidecar's SQS messages through SES: one SendEmail per recipient, deleted once all are accepted."""
    from cdc_offload.deliver.runtime import run_deliver

    settings = build_deliver_settings(params)
    _until_sigterm(lambda stop: run_deliver(settings, stop))


@main.command()
@_consumer_options(EVENTS_METRICS_PORT, EVENTS_CONCURRENCY)
@_with_logging
def events(**params: Any) -> None:
    """Record SES's notifications (delivered, bounced, complained, rejected, delayed) per recipient in the ledger."""
    from cdc_offload.deliver.runtime import run_events

    settings = build_consumer_settings(params)
    _until_sigterm(lambda stop: run_events(settings, stop))
