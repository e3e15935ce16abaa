"""A complete local stack on this machine: a throwaway MariaDB holding a Moodle-shaped database
with least-privilege reader and writer accounts, and moto's AWS server on a loopback port.
Used by `cdc-offload demo`, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cdc_offload.demo.moodle import create_schema
from cdc_offload.sandbox import MariaDBSandbox, free_port
from cdc_offload.settings import Dsn, Settings, SinkSettings, TableNames, parse_dsn
from cdc_offload.store import grant_statements

READER = "cdc_reader"
WRITER = "cdc_writer"


@dataclass(frozen=True)
class MoodleDatabase:
    server: MariaDBSandbox
    database: str
    prefix: str
    reader: Dsn
    writer: Dsn

    def admin(self, autocommit: bool = True) -> Any:
        return self.server.connect(self.database, autocommit=autocommit)

    def settings(self, sink: SinkSettings, **overrides: Any) -> Settings:

        overrides.setdefault("tables", TableNames(prefix=self.prefix))
        overrides.setdefault("state_schema", f"cdc_{self.database}")
        return Settings(source=self.reader, writer=self.writer, sink=sink, **overrides)


def moodle_database(
    server: MariaDBSandbox,
    database: str = "moodle",
    prefix: str = "mdl_",
    state_schema: str | None = None,
) -> MoodleDatabase:
    """A fresh database with the Moodle tables and the two accounts `cdc-offload init` asks for."""
    state_schema = state_schema or f"cdc_{database}"
    admin = server.connect()
    reader_password = secrets.token_urlsafe(12)
    writer_password = secrets.token_urlsafe(12)
    reader_user = f"{READER}_{database}"[:32]
    writer_user = f"{WRITER}_{database}"[:32]
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
        cursor.execute(f"USE `{database}`")
        create_schema(cursor, prefix)
        draft = Settings(
            source=Dsn(server.host, server.port, reader_user, database),
            writer=Dsn(server.host, server.port, writer_user, database),
            sink=SinkSettings(queue_url="unused"),
            state_schema=state_schema,
            tables=TableNames(prefix=prefix),
        )
        for template in grant_statements(draft, reader_user, writer_user):
            statement = template.replace("<reader password>", reader_password)
            cursor.execute(statement.replace("<writer password>", writer_password).rstrip(";"))
    admin.close()
    return MoodleDatabase(
        server=server,
        database=database,
        prefix=prefix,
        reader=parse_dsn("reader", server.url(reader_user, database=database), reader_password),
        writer=parse_dsn("writer", server.url(writer_user, database=database), writer_password),
    )


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a loopback port (real HTTP through boto3); yields its endpoint URL and
    points boto3's standard configuration at it for this process."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (*AWS_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
