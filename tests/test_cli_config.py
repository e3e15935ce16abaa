"""Configuration is validated before anything connects: one clear line naming the option, exit 2."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cdc_offload.cli import build_consumer_settings, build_deliver_settings, build_settings, main
from cdc_offload.deliver.settings import (
    CONSUMER_OPTION_FIELDS,
    DELIVER_METRICS_PORT,
    EVENTS_CONCURRENCY,
    EVENTS_METRICS_PORT,
    ConsumerSettings,
    DeliverSettings,
)
from cdc_offload.settings import OPTION_FIELDS, Settings, SinkSettings, TableNames, TlsSettings

GOOD = ["--source-dsn", "mysql://reader@127.0.0.1:1/moodle", "--writer-dsn", "mysql://writer@127.0.0.1:1/moodle"]


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        (
            ["--source-dsn", "postgres://x@h/db", "--writer-dsn", "mysql://w@h/db", "--queue-url", "q"],
            "--source-dsn",
            "mysql://",
        ),
        ([*GOOD], "--queue-url", "required"),
        ([*GOOD, "--queue-url", "q", "--pair-window", "-1"], "--pair-window", "positive"),
        ([*GOOD, "--queue-url", "q", "--pair-window", "60"], "--pair-window", "--max-event-age"),
        ([*GOOD, "--sink", "ses"], "--from", "required"),
        ([*GOOD, "--queue-url", "q", "--table-prefix", "mdl_;drop"], "--table-prefix", "identifier"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_option(args: list[str], option: str, words: str) -> None:
    result = CliRunner().invoke(main, ["run", *args], env={})
    assert result.exit_code == 2
    assert option in result.output and words in result.output
    assert "Traceback" not in result.output


def test_every_run_option_has_an_environment_variable_shown_in_help() -> None:
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for variable in (
        "CDC_OFFLOAD_SOURCE_DSN",
        "CDC_OFFLOAD_WRITER_PASSWORD_FILE",
        "CDC_OFFLOAD_QUEUE_URL",
        "CDC_OFFLOAD_PAIR_WINDOW",
    ):
        assert variable in result.output


def test_options_come_from_the_environment() -> None:
    env = {
        "CDC_OFFLOAD_SOURCE_DSN": "mysql://reader@127.0.0.1:1/moodle",
        "CDC_OFFLOAD_WRITER_DSN": "mysql://writer@127.0.0.1:1/moodle",
        "CDC_OFFLOAD_QUEUE_URL": "http://q",
        "CDC_OFFLOAD_PAIR_WINDOW": "nope",
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 2 and "--pair-window" in result.output and "not a valid float" in result.output


# -- each default is declared once: on the settings field, which the option and build_settings read --


def _commands(group: click.Group = main, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _flag(parameter: click.Option) -> str:
    return next(name for name in parameter.opts if name.startswith("--"))


def _declared(table: dict[str, tuple[type, str]], flag: str) -> Any:
    owner, name = table[flag]
    value = next(f for f in dataclasses.fields(owner) if f.name == name).default
    return tuple(sorted(value)) if isinstance(value, frozenset) else value


def _table_of(command: str) -> dict[str, tuple[type, str]]:
    return CONSUMER_OPTION_FIELDS if command in ("deliver", "events") else OPTION_FIELDS


@pytest.fixture
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("CDC_OFFLOAD_")]:
        monkeypatch.delenv(variable)


def test_every_option_that_sets_a_field_defaults_to_that_fields_default() -> None:
    checked = set()
    for command_name, command in _commands():
        table = _table_of(command_name)
        for parameter in command.params:
            if not isinstance(parameter, click.Option) or _flag(parameter) not in table:
                continue
            flag = _flag(parameter)
            expected = (
                EVENTS_CONCURRENCY if (command_name, flag) == ("events", "--concurrency") else _declared(table, flag)
            )
            assert parameter.default == expected, f"{command_name} {flag}: {parameter.default!r} != {expected!r}"
            checked.add(flag)
    assert checked == set(OPTION_FIELDS) | set(CONSUMER_OPTION_FIELDS), "every mapped option exists on a command"


# Fields with a default that no option sets from it, and why.
NOT_FROM_AN_OPTION = {
    (SinkSettings, "queue_url"): "required with --sink sqs: no default",
    (SinkSettings, "ses_from"): "required with --sink ses: no default",
    (SinkSettings, "ses_configuration_set"): "optional, None",
    (TableNames, "outbox_columns"): "built from the repeatable --outbox-column",
    (TlsSettings, "ca"): "a file, None",
    (TlsSettings, "cert"): "a file, None",
    (TlsSettings, "key"): "a file, None",
    (TlsSettings, "require"): "a flag, False",
    (Settings, "sink"): "a group of fields, mapped one by one",
    (Settings, "tables"): "a group of fields, mapped one by one",
    (Settings, "checkpoint_interval"): "no option: tests shorten it",
    (Settings, "metrics_port"): "run's 9108 is the CLI's; None here means no HTTP server",
    (ConsumerSettings, "metrics_port"): "deliver's 9110 and events' 9111 are the CLI's; None: no HTTP server",
}


@pytest.mark.parametrize(
    ("owners", "table"),
    [
        ((Settings, SinkSettings, TableNames, TlsSettings), OPTION_FIELDS),
        ((ConsumerSettings, DeliverSettings), CONSUMER_OPTION_FIELDS),
    ],
)
def test_every_defaulted_field_is_an_options_default_or_says_why_not(
    owners: tuple[type, ...], table: dict[str, tuple[type, str]]
) -> None:
    mapped = set(table.values())
    for owner in owners:
        for declared in dataclasses.fields(owner):
            if declared.default is dataclasses.MISSING and declared.default_factory is dataclasses.MISSING:
                continue
            key = (owner, declared.name)
            if owner is TlsSettings and key in set(OPTION_FIELDS.values()):
                continue
            assert key in mapped or key in NOT_FROM_AN_OPTION, f"{owner.__name__}.{declared.name} has no option"


def _parsed(command: str, args: list[str]) -> dict[str, Any]:
    cmd: click.Command = main
    for word in command.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[word]
    with cmd.make_context(command, list(args)) as context:
        return dict(context.params)


@pytest.mark.usefixtures("no_environment")
def test_cli_fallback_and_settings_defaults_are_the_same_values() -> None:
    """The three ways to get a default: the command line with the option left out, `build_settings`
    given a mapping without it (configuration from elsewhere), and the dataclass itself."""
    minimal = {"source_dsn": GOOD[1], "writer_dsn": GOOD[3], "queue_url": "https://sqs.example/q"}
    from_cli = build_settings(_parsed("run", [*GOOD, "--queue-url", minimal["queue_url"]]))
    from_mapping = build_settings(minimal)
    declared = Settings(
        source=from_mapping.source, writer=from_mapping.writer, sink=SinkSettings(queue_url=minimal["queue_url"])
    )
    assert from_cli.metrics_port == 9108 and from_mapping.metrics_port is None
    assert dataclasses.replace(from_cli, metrics_port=None) == from_mapping == declared
    for flag, (owner, name) in OPTION_FIELDS.items():
        holder = {
            Settings: from_cli,
            SinkSettings: from_cli.sink,
            TableNames: from_cli.tables,
            TlsSettings: from_cli.source.tls,
        }[owner]
        value = getattr(holder, name)
        assert (tuple(sorted(value)) if isinstance(value, frozenset) else value) == _declared(OPTION_FIELDS, flag), flag


@pytest.mark.usefixtures("no_environment")
def test_consumer_cli_fallback_and_settings_defaults_are_the_same_values() -> None:
    base = ["--queue-url", "https://sqs.example/q", "--writer-dsn", GOOD[3], "--from", "no-reply@academy.example"]
    minimal = {"queue_url": base[1], "writer_dsn": base[3], "ses_from": base[5]}
    from_cli = build_deliver_settings(_parsed("deliver", base))
    from_mapping = build_deliver_settings(minimal)
    declared = DeliverSettings(ConsumerSettings(base[1], from_mapping.consumer.writer), sender=base[5])
    assert from_cli.consumer.metrics_port == DELIVER_METRICS_PORT and from_mapping.consumer.metrics_port is None
    consumer = dataclasses.replace(from_cli.consumer, metrics_port=None)
    assert dataclasses.replace(from_cli, consumer=consumer) == from_mapping == declared
    events = build_consumer_settings(_parsed("events", base[:4]))
    assert events.concurrency == EVENTS_CONCURRENCY and events.metrics_port == EVENTS_METRICS_PORT
    assert (
        dataclasses.replace(events, concurrency=declared.consumer.concurrency, metrics_port=None) == declared.consumer
    )
