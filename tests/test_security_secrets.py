"""Secrets come from the environment or files, never need the command line, and are never
printed: not in --help (whatever the environment holds), not in the settings' repr (the
configuration as a traceback or a debugger would show it), not in any error, and not by the
real process when it fails to connect."""

from __future__ import annotations

import dataclasses
import traceback
import urllib.parse
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cdc_offload.cli import build_settings, main
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.settings import SinkSettings, TlsSettings
from cdc_offload.store import Store, StoreError
from tests.conftest import CANARY
from tests.support import init_state, wait_for
from tests.test_bad_input import SidecarProcess

# In a URL the password is percent-encoded (the canary holds a '#', which would end the URL).
QUOTED = urllib.parse.quote(CANARY, safe="")
SECRET_ENV = {
    "CDC_OFFLOAD_SOURCE_PASSWORD": CANARY,
    "CDC_OFFLOAD_WRITER_PASSWORD": CANARY,
    "CDC_OFFLOAD_SOURCE_DSN": f"mysql://reader:{QUOTED}@127.0.0.1:1/moodle",
    "CDC_OFFLOAD_WRITER_DSN": f"mysql://writer:{QUOTED}@127.0.0.1:1/moodle",
    "AWS_SECRET_ACCESS_KEY": CANARY,
    "AWS_SESSION_TOKEN": CANARY,
}


def every_command(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += every_command(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("command", every_command(main), ids=lambda c: " ".join(c) or "main")
def test_help_never_shows_a_secret_from_the_environment(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], env=SECRET_ENV, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert CANARY not in result.output and QUOTED not in result.output


def test_no_secret_is_a_command_line_necessity() -> None:
    """Every password option has an environment variable and a file twin; AWS has no option at all
    (the standard credential chain: environment, shared files, instance or pod role)."""
    for command in every_command(main):
        target = main
        for name in command:
            target = target.commands[name]  # type: ignore[attr-defined]
        names = {o.name: o for o in target.params if isinstance(o, click.Option)}
        for name, param in names.items():
            assert "aws" not in name or name in ("aws_deadline", "aws_concurrency"), f"{command}: --{name}"
            assert "secret" not in name and "token" not in name, f"{command}: --{name}"
            if name.endswith("_password"):
                assert param.envvar == f"CDC_OFFLOAD_{name.upper()}"
                assert f"{name}_file" in names, f"{command}: --{name} has no file twin"
                assert names[f"{name}_file"].envvar == f"CDC_OFFLOAD_{name.upper()}_FILE"


def test_settings_repr_never_holds_a_password(tmp_path: Path) -> None:
    secret_file = tmp_path / "writer.pw"
    secret_file.write_text(CANARY + "\n")
    settings = build_settings(
        {
            "source_dsn": f"mysql://reader:{QUOTED}@db.example:3306/moodle",
            "writer_dsn": "mysql://writer@primary.example:3306/moodle",
            "writer_password_file": str(secret_file),
            "queue_url": "https://sqs.example/q",
        }
    )
    assert settings.source.password == CANARY and settings.writer.password == CANARY, "read, and right"
    for shown in (repr(settings), str(settings), str(settings.source), repr(settings.writer)):
        assert CANARY not in shown and QUOTED not in shown
    assert str(settings.source) == "mysql://reader@db.example:3306/moodle"
    assert "password" not in {f.name for f in dataclasses.fields(settings.source) if f.repr}
    assert settings.writer.tls == TlsSettings()


@pytest.mark.parametrize(
    "dsn",
    [
        f"mysql://writer:{QUOTED}@127.0.0.1:notaport/moodle",
        f"mysql://writer:{QUOTED}@127.0.0.1:3306/moo;dle",
        f"postgres://writer:{QUOTED}@127.0.0.1:3306/moodle",
        f"mysql://:{QUOTED}@127.0.0.1:3306/moodle",
        f"mysql://writer:{CANARY}@127.0.0.1:3306/moodle",  # not encoded: the '#' cuts the URL short
    ],
)
def test_a_bad_dsn_is_reported_without_its_password(dsn: str) -> None:
    result = CliRunner().invoke(main, ["check"], env={"CDC_OFFLOAD_WRITER_DSN": dsn, "CDC_OFFLOAD_SOURCE_DSN": dsn})
    assert result.exit_code == 2 and "--writer-dsn" in result.output
    assert CANARY not in result.output and QUOTED not in result.output
    assert "Canary" not in result.output, "not even the part of it before the '#'"


def test_a_wrong_password_or_an_unreadable_file_is_reported_without_the_secret(
    moodle: MoodleDatabase, sqs_queue: str, tmp_path: Path
) -> None:
    wrong = dataclasses.replace(moodle.writer, password=CANARY)
    store = Store(dataclasses.replace(moodle.settings(SinkSettings(queue_url=sqs_queue)), writer=wrong))
    with pytest.raises(StoreError) as refused:
        store.connect()
    assert "MySQL error 1045" in str(refused.value)
    assert CANARY not in str(refused.value) and CANARY not in "".join(traceback.format_exception(refused.value))

    env = {
        "CDC_OFFLOAD_SOURCE_DSN": moodle.server.url(moodle.reader.user, QUOTED, moodle.database),
        "CDC_OFFLOAD_WRITER_DSN": moodle.server.url(moodle.writer.user, database=moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": CANARY,
        "CDC_OFFLOAD_QUEUE_URL": sqs_queue,
    }
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 1
    assert "FAIL  writer connection: cannot connect to mysql://" in result.output and "1045" in result.output
    assert "FAIL  source connection" in result.output
    assert CANARY not in result.output and QUOTED not in result.output

    unreadable = tmp_path / "missing.pw"
    result = CliRunner().invoke(main, ["check", "--writer-password-file", str(unreadable)], env=env)
    assert result.exit_code == 2 and "cannot read the password file" in result.output
    assert CANARY not in result.output


@pytest.mark.slow
def test_the_real_process_failing_to_connect_prints_no_secret(
    moodle: MoodleDatabase, sqs_queue: str, tmp_path: Path
) -> None:
    """`run` with a wrong writer password retries with a log line per attempt; the reader's
    password comes from a *_FILE variable and the DSN carries nothing secret."""
    init_state(moodle.settings(SinkSettings(queue_url=sqs_queue)))
    reader_file = tmp_path / "reader.pw"
    reader_file.write_text(moodle.reader.password)
    running = SidecarProcess.for_moodle(
        moodle, sqs_queue, tmp_path, CDC_OFFLOAD_SOURCE_PASSWORD_FILE=str(reader_file), AWS_SECRET_ACCESS_KEY=CANARY
    )
    running.env.update(CDC_OFFLOAD_WRITER_PASSWORD=CANARY, CDC_OFFLOAD_LOG_LEVEL="DEBUG")
    del running.env["CDC_OFFLOAD_SOURCE_PASSWORD"]
    # Not ready, ever: a sidecar that cannot reach its primary does not lead.
    running.start(ready=False)
    try:
        wait_for(lambda: (tmp_path / "stdout").read_text().count('"recovering"') >= 2, 30, "two failed attempts")
    finally:
        assert running.stop() == 0
    stdout, stderr = running.output()
    assert "MySQL error 1045" in stdout
    assert CANARY not in stdout and CANARY not in stderr
    assert "Traceback" not in stderr
