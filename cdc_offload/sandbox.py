"""A throwaway MariaDB server with the binlog on, for the demo, the tests and the benchmarks.

It owns its datadir and a free loopback port, so it never touches a server the machine already
runs, and it is shut down (and its files removed) when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from cdc_offload.model import Position

DEFAULT_BINLOG_OPTIONS: tuple[str, ...] = (
    "--log-bin=binlog",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
)


class SandboxError(RuntimeError):
    """The throwaway server could not be installed or started."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def find_executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
        )
        if found:
            return found
    raise SandboxError(
        f"none of {', '.join(names)} is installed: run `apt-get install -y mariadb-server` "
        "(Debian/Ubuntu) or point CDC_OFFLOAD_TEST_MYSQL_URL at an existing server"
    )


@dataclass
class MariaDBSandbox:
    """One `mariadbd` process: its own datadir, port and server id."""

    server_id: int = 1
    extra_options: Sequence[str] = ()
    binlog_options: Sequence[str] = DEFAULT_BINLOG_OPTIONS
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cdc-offload-mariadb-")))
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_path(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def install(self) -> None:
        if (self.datadir / "mysql").exists():
            return
        install_db = find_executable("mariadb-install-db", "mysql_install_db")
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise SandboxError(f"mariadb-install-db failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 30.0) -> None:
        self.install()
        daemon = find_executable("mariadbd", "mysqld")
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server writes it until stop()
        self._process = subprocess.Popen(
            [
                daemon,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket_path}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                f"--server-id={self.server_id}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--max-connections=200",
                "--max-allowed-packet=64M",
                *self.binlog_options,
                *self.extra_options,
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SandboxError(f"mariadbd exited at start: {self.server_log_tail()}")
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.05)  # polling a starting server: there is no event to wait on
        raise SandboxError(f"mariadbd not ready after {timeout}s: {self.server_log_tail()}")

    def server_log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def connect(
        self, database: str | None = None, autocommit: bool = True
    ) -> pymysql.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            database=database,
            autocommit=autocommit,
            charset="utf8mb4",
            connect_timeout=5,
        )

    def binlog_end(self) -> Position:
        """Where the server's binlog ends now (where a write made next will start)."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW MASTER STATUS")
                row = cursor.fetchone()
                assert row is not None, "the binlog is off"
                return Position(str(row[0]), int(row[1]))
        finally:
            connection.close()

    def url(self, user: str = "root", password: str = "", database: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"mysql://{user}{secret}@{self.host}:{self.port}/{database}"

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def restart(self, extra_options: Sequence[str] | None = None) -> None:
        self.stop()
        if extra_options is not None:
            self.extra_options = extra_options
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_mariadb(**options: object) -> Iterator[MariaDBSandbox]:
    server = MariaDBSandbox(**options)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.remove()
