"""The sidecar as a real subprocess (`cdc-offload run --skip-checks`), so SIGKILL, SIGSTOP and
SIGCONT are real. Its JSON log lines are read from stdout by a thread and kept for the test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_offload.demo.stack import AWS_ENV, MoodleDatabase
from cdc_offload.sandbox import free_port
from cdc_offload.settings import Dsn

REPO = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


def dsn_url(dsn: Dsn, host: str | None = None, port: int | None = None) -> str:
    return f"mysql://{dsn.user}@{host or dsn.host}:{port or dsn.port}/{dsn.database}"


@dataclass
class Link:
    """Where the sidecar connects for one server: the server itself or a proxy in front of it."""

    dsn: Dsn
    host: str | None = None
    port: int | None = None

    def url(self) -> str:
        return dsn_url(self.dsn, self.host, self.port)


def sidecar_env(
    moodle: MoodleDatabase,
    queue_url: str,
    aws_endpoint: str,
    *,
    source: Link | None = None,
    writer: Link | None = None,
    **options: Any,
) -> dict[str, str]:
    """Environment for `cdc-offload run`: every option as CDC_OFFLOAD_<OPTION>, as an operator would."""
    source = source or Link(moodle.reader)
    writer = writer or Link(moodle.writer)
    env = {
        "CDC_OFFLOAD_SOURCE_DSN": source.url(),
        "CDC_OFFLOAD_SOURCE_PASSWORD": source.dsn.password,
        "CDC_OFFLOAD_WRITER_DSN": writer.url(),
        "CDC_OFFLOAD_WRITER_PASSWORD": writer.dsn.password,
        "CDC_OFFLOAD_QUEUE_URL": queue_url,
        "CDC_OFFLOAD_STATE_SCHEMA": f"cdc_{moodle.database}",
        "CDC_OFFLOAD_TABLE_PREFIX": moodle.prefix,
        "CDC_OFFLOAD_METRICS_HOST": "127.0.0.1",
        "CDC_OFFLOAD_HEARTBEAT": "0.5",
        "CDC_OFFLOAD_READ_TIMEOUT": "3",
        "CDC_OFFLOAD_AWS_DEADLINE": "10",
        "CDC_OFFLOAD_LOG_LEVEL": "INFO",
        "CDC_OFFLOAD_FAIL_CLOSED_LINGER": "0",
        "AWS_ENDPOINT_URL": aws_endpoint,
        **AWS_ENV,
    }
    for name, value in options.items():
        env["CDC_OFFLOAD_" + name.upper()] = str(value)
    return env


@dataclass
class SidecarProcess:
    """One `cdc-offload run` process. `overrides` are options given as their CDC_OFFLOAD_* variables
    (`{"sink": {...}}` for the breaker's); `crash_at` sets CDC_OFFLOAD_CRASH_AT, `pause_at`
    CDC_OFFLOAD_PAUSE_AT."""

    env: dict[str, str]
    name: str = "sidecar"
    overrides: dict[str, Any] = field(default_factory=dict)
    crash_at: str | None = None
    pause_at: str | None = None
    events: list[Event] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> SidecarProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_OFFLOAD_", "AWS_"))}
        env.update(self.env)
        env["CDC_OFFLOAD_METRICS_PORT"] = str(self.metrics_port)
        env["PYTHONUNBUFFERED"] = "1"
        if self.crash_at:
            env["CDC_OFFLOAD_CRASH_AT"] = self.crash_at
        if self.pause_at:
            env["CDC_OFFLOAD_PAUSE_AT"] = self.pause_at
        for name, value in self.overrides.items():
            if name == "sink":
                for sink_name, sink_value in value.items():
                    env["CDC_OFFLOAD_" + sink_name.upper()] = str(sink_value)
            else:
                env["CDC_OFFLOAD_" + name.upper()] = str(value)
        command = [shutil.which("cdc-offload") or "cdc-offload"]
        self.events = []
        self.stderr_lines = []
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [*command, "run", "--skip-checks"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.process,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def _read_stdout(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "non_json_output", "text": line[:300]}
            event["_at"] = time.monotonic()
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def _read_stderr(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            with self._changed:
                self.stderr_lines.append(raw.decode(errors="replace").rstrip())
                self._changed.notify_all()

    # -- observing --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(self, name: str, timeout: float = 30.0, count: int = 1, after: float = 0.0) -> Event:
        """The `count`-th log event called `name` logged after monotonic time `after`."""

        def found() -> Event | None:
            hits = [e for e in self.events if e.get("event") == name and e["_at"] >= after]
            return hits[count - 1] if len(hits) >= count else None

        deadline = time.monotonic() + timeout
        with self._changed:
            while (hit := found()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._exited_and_drained():
                    raise AssertionError(
                        f"{self.name}: no {name!r} event within {timeout}s (alive={self.alive()}); "
                        f"last events: {[e.get('event') for e in self.events[-12:]]}; stderr: {self.stderr_lines[-5:]}"
                    )
                self._changed.wait(min(remaining, 0.2))
            return hit

    def _exited_and_drained(self) -> bool:
        return self.process is not None and self.process.poll() is not None and not self._readers[0].is_alive()

    def wait_leading(self, timeout: float = 30.0, after: float = 0.0) -> Event:
        return self.wait_event("leading", timeout, after=after)

    def metrics(self) -> dict[str, float]:
        """The /metrics exposition as {'name{labels}': value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def process_state(self) -> str:
        """The kernel's state letter for the process (R, S, T = stopped, Z, ...)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0]

    # -- signals ----------------------------------------------------------------------------
    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.wait_exit(10)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        # Let the reader threads take the last lines the process wrote (EOF once it is gone).
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.alive():
            self.resume()
            self.kill()


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)  # poll interval of a deadline-bounded wait
