"""Configuration is validated before anything connects: one clear line naming the option, exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cdc_offload.cli import main

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
