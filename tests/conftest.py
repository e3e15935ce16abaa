"""Real servers for the tests: one throwaway MariaDB per session (or MySQL 8 via testcontainers
where a Docker engine exists, or an external server named by CDC_OFFLOAD_TEST_MYSQL_URL), a fresh
Moodle database per test, and moto's HTTP server for SQS and SES."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pymysql
import pytest

from cdc_offload.demo.stack import MoodleDatabase, moodle_database, moto_server
from cdc_offload.sandbox import MariaDBSandbox
from cdc_offload.settings import SinkSettings

CANARY = "Canary#7f3Qz9!pw"
_database_names = itertools.count(1)


@dataclass
class ExternalServer:
    """A server someone else runs (CI service, testcontainers): the sandbox's duck type."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, autocommit: bool = True) -> Any:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=autocommit,
            charset="utf8mb4",
        )

    def url(self, user: str = "root", password: str = "", database: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"mysql://{user}{secret}@{self.host}:{self.port}/{database}"


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _server_kinds() -> list[Any]:
    kinds: list[Any] = ["mariadb"]
    kinds.append(pytest.param("mysql8", marks=pytest.mark.skipif(not _docker_available(), reason="no Docker engine")))
    return kinds


@pytest.fixture(scope="session", params=_server_kinds())
def db_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    external = os.environ.get("CDC_OFFLOAD_TEST_MYSQL_URL")
    if external:
        parts = urllib.parse.urlsplit(external)
        yield ExternalServer(
            parts.hostname or "127.0.0.1", parts.port or 3306, parts.username or "root", parts.password or ""
        )
        return
    if request.param == "mysql8":
        from testcontainers.mysql import MySqlContainer

        container = MySqlContainer("mysql:8.0").with_command(
            "--log-bin=binlog --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL --server-id=1"
        )
        with container:
            yield ExternalServer(
                container.get_container_host_ip(),
                int(container.get_exposed_port(3306)),
                "root",
                container.root_password,
            )
        return
    server = MariaDBSandbox()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def moodle(db_server: Any) -> MoodleDatabase:
    """A fresh Moodle database (and its reader/writer accounts) for one test."""
    return moodle_database(db_server, database=f"moodle{next(_database_names)}")


@pytest.fixture
def sqs_queue(aws_endpoint: str) -> str:
    name = f"emails-{next(_database_names)}"
    return str(boto3.client("sqs").create_queue(QueueName=name)["QueueUrl"])


@pytest.fixture
def fifo_queue(aws_endpoint: str) -> str:
    name = f"emails-{next(_database_names)}.fifo"
    return str(boto3.client("sqs").create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"])


@pytest.fixture
def ses_sender(aws_endpoint: str) -> str:
    sender = "no-reply@academy.example"
    boto3.client("sesv2").create_email_identity(EmailIdentity=sender)
    return sender


@pytest.fixture
def sqs_sink(sqs_queue: str) -> SinkSettings:
    # moto answers from inside this test process: on two busy cores a 40-call round (a 400-user
    # transaction) was seen to take over 5 s, and a row AWS answers after its round's deadline
    # is left to Moodle. Tests of the deadline itself set their own.
    return SinkSettings(queue_url=sqs_queue, deadline=20.0)
