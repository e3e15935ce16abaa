"""TLS to both servers, against a MariaDB started with a CA and a server certificate this test made:
verified connections work end to end and are really encrypted (asked of the server, per thread);
a wrong CA, a wrong host name, a server without TLS and a plaintext link are each refused with
one clear sentence; a client certificate is presented when the account requires one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from click.testing import CliRunner

from cdc_offload import tls
from cdc_offload.cli import build_settings, main
from cdc_offload.demo.moodle import NewUser, create_user_iomad
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.errors import SourceError
from cdc_offload.model import Checkpoint, Position
from cdc_offload.mysql_connection import connect
from cdc_offload.sandbox import MariaDBSandbox
from cdc_offload.settings import Dsn, SettingsError, SinkSettings, TlsSettings, tls_settings
from cdc_offload.source import BinlogSource
from cdc_offload.source.server_facts import current_end
from cdc_offload.store import Store as StateStore
from cdc_offload.store import StoreError
from tests.support import Sidecar, ledger, outbox_rows, sqs_messages, wait_for
from tests.tls import Pki, make_pki, server_options

FAST = {"heartbeat": 0.5, "read_timeout": 3.0, "checkpoint_interval": 0.2}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[MariaDBSandbox]:
    # performance_schema lets the test ask the server whether each connection thread is encrypted.
    server = MariaDBSandbox(extra_options=[*server_options(pki), "--performance-schema=ON"])
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def tls_moodle(tls_server: MariaDBSandbox, pki: Pki) -> MoodleDatabase:
    """The least-privilege accounts, which the server now refuses over plaintext: the reader must
    use TLS, the writer must also present a client certificate from our CA with our subject."""
    moodle = moodle_database(tls_server, database="moodle_tls")
    admin = tls_server.connect()
    with admin.cursor() as cursor:
        cursor.execute(f"ALTER USER '{moodle.reader.user}'@'%' REQUIRE SSL")
        cursor.execute(f"ALTER USER '{moodle.writer.user}'@'%' REQUIRE SUBJECT '{pki.client_subject}'")
    admin.close()
    return moodle


def with_tls(dsn: Dsn, **tls_fields: Any) -> Dsn:
    return dataclasses.replace(dsn, tls=TlsSettings(**tls_fields))


def reader_tls(moodle: MoodleDatabase, pki: Pki, **overrides: Any) -> Dsn:
    return with_tls(moodle.reader, **{"ca": str(pki.ca), "require": True, **overrides})


def writer_tls(moodle: MoodleDatabase, pki: Pki, **overrides: Any) -> Dsn:
    fields = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key), "require": True}
    return with_tls(moodle.writer, **{**fields, **overrides})


def encrypted_threads(server: MariaDBSandbox, user: str) -> list[tuple[str, str]]:
    """(command, TLS cipher) of every connection of `user`, as the server sees them."""
    admin = server.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT t.PROCESSLIST_COMMAND, s.VARIABLE_VALUE FROM performance_schema.status_by_thread s "
                "JOIN performance_schema.threads t USING (THREAD_ID) "
                "WHERE s.VARIABLE_NAME = 'Ssl_cipher' AND t.PROCESSLIST_USER = %s",
                (user,),
            )
            return [(str(command), str(cipher or "")) for command, cipher in cursor.fetchall()]
    finally:
        admin.close()


@pytest.mark.slow
def test_the_sidecar_runs_over_verified_tls_and_every_connection_is_encrypted(
    tls_server: MariaDBSandbox, tls_moodle: MoodleDatabase, pki: Pki, sqs_sink: SinkSettings
) -> None:
    moodle = dataclasses.replace(tls_moodle, reader=reader_tls(tls_moodle, pki), writer=writer_tls(tls_moodle, pki))
    running = Sidecar(moodle.settings(sqs_sink, **FAST)).start()
    user_id, outbox_id = create_user_iomad(moodle.admin(), NewUser("secure", "secure@example.org", "Pw#tls1"))
    wait_for(lambda: running.resolved() >= 1, 30, "the row resolved over TLS")

    # Asked of the server while the sidecar runs: the binlog dump and the writer are encrypted.
    reader_threads = wait_for(
        lambda: [t for t in encrypted_threads(tls_server, moodle.reader.user) if "Binlog Dump" in t[0]],
        10,
        "the binlog dump thread",
    )
    writer_threads = encrypted_threads(tls_server, moodle.writer.user)
    running.stop()
    assert reader_threads and all(cipher for _, cipher in reader_threads), reader_threads
    assert writer_threads and all(cipher for _, cipher in writer_threads), writer_threads

    assert ledger(moodle, running.settings.state_schema)[outbox_id]["status"] == "offloaded"
    assert outbox_id not in outbox_rows(moodle)
    (message,) = sqs_messages(sqs_sink.queue_url or "")
    assert message["user_id"] == user_id


def test_a_connection_reports_its_tls_version_and_cipher(tls_moodle: MoodleDatabase, pki: Pki) -> None:
    connection = connect(writer_tls(tls_moodle, pki), autocommit=True)
    try:
        version, cipher = tls.session_tls(connection)
    finally:
        connection.close()
    assert version in ("TLSv1.2", "TLSv1.3") and cipher


def test_without_tls_settings_a_server_offering_tls_still_gets_an_encrypted_link(tls_moodle: MoodleDatabase) -> None:
    # The driver's default (encrypt when offered, verify nothing), kept while its context is built
    # once instead of per connection: the reader account REQUIREs SSL, so a plaintext attempt
    # would be refused outright.
    for _ in range(2):  # the second connection uses the shared context
        connection = connect(tls_moodle.reader, autocommit=True)
        try:
            version, cipher = tls.session_tls(connection)
        finally:
            connection.close()
        assert version in ("TLSv1.2", "TLSv1.3") and cipher


def test_check_reports_verified_tls_and_least_privilege(tls_moodle: MoodleDatabase, pki: Pki, sqs_queue: str) -> None:
    env = {
        "CDC_OFFLOAD_SOURCE_DSN": tls_moodle.server.url(tls_moodle.reader.user, database=tls_moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD": tls_moodle.reader.password,
        "CDC_OFFLOAD_SOURCE_SSL_CA": str(pki.ca),
        "CDC_OFFLOAD_SOURCE_REQUIRE_TLS": "1",
        "CDC_OFFLOAD_WRITER_DSN": tls_moodle.server.url(tls_moodle.writer.user, database=tls_moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": tls_moodle.writer.password,
        "CDC_OFFLOAD_WRITER_SSL_CA": str(pki.ca),
        "CDC_OFFLOAD_WRITER_SSL_CERT": str(pki.client_cert),
        "CDC_OFFLOAD_WRITER_SSL_KEY": str(pki.client_key),
        "CDC_OFFLOAD_STATE_SCHEMA": "cdc_moodle_tls",
        "CDC_OFFLOAD_QUEUE_URL": sqs_queue,
    }
    init = CliRunner().invoke(main, ["init"], env=env)
    assert init.exit_code == 0, init.output
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 0, result.output
    assert "ok    source TLS (TLSv1." in result.output and "verified)" in result.output
    assert "ok    writer TLS (TLSv1." in result.output
    assert "ok    reader privileges" in result.output and "ok    writer privileges" in result.output
    assert "least privilege" not in result.output, "the accounts init asks for are not broader than needed"


def test_a_wrong_ca_is_refused_with_a_clear_error(tls_moodle: MoodleDatabase, pki: Pki, sqs_queue: str) -> None:
    dsn = writer_tls(tls_moodle, pki, ca=str(pki.wrong_ca))
    with pytest.raises(tls.TlsError) as refused:
        connect(dsn, autocommit=True)
    assert "certificate is not trusted" in str(refused.value) and "certificate chain" in str(refused.value)
    assert tls_moodle.writer.password not in str(refused.value)

    store = StateStore(dataclasses.replace(tls_moodle.settings(SinkSettings(queue_url=sqs_queue)), writer=dsn))
    with pytest.raises(StoreError, match="certificate is not trusted"):
        store.connect()

    env = {
        "CDC_OFFLOAD_SOURCE_DSN": tls_moodle.server.url(tls_moodle.reader.user, database=tls_moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD": tls_moodle.reader.password,
        "CDC_OFFLOAD_SOURCE_SSL_CA": str(pki.wrong_ca),
        "CDC_OFFLOAD_WRITER_DSN": tls_moodle.server.url(tls_moodle.writer.user, database=tls_moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD": tls_moodle.writer.password,
        "CDC_OFFLOAD_WRITER_SSL_CA": str(pki.wrong_ca),
        "CDC_OFFLOAD_QUEUE_URL": sqs_queue,
    }
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 1
    assert "FAIL  source connection: TLS to mysql://" in result.output
    assert "FAIL  writer connection: TLS to mysql://" in result.output
    assert "certificate is not trusted" in result.output and "fix: check --source-ssl-ca" in result.output
    assert "Traceback" not in result.output


def test_a_host_name_the_certificate_does_not_hold_is_refused(tls_moodle: MoodleDatabase, pki: Pki) -> None:
    # The certificate names 127.0.0.1 only; "localhost" reaches the same server.
    by_name = dataclasses.replace(reader_tls(tls_moodle, pki), host="localhost")
    with pytest.raises(tls.TlsError, match=r"does not name 'localhost'.*Hostname mismatch"):
        connect(by_name, autocommit=True)
    with pytest.raises(tls.TlsError, match="does not name 'localhost'"):
        current_end(by_name)

    # The operator's explicit choice: encrypted and CA-verified, without the name check.
    unchecked = dataclasses.replace(reader_tls(tls_moodle, pki, verify_identity=False), host="localhost")
    connection = connect(unchecked, autocommit=True)
    try:
        assert tls.session_tls(connection)[1]
    finally:
        connection.close()


def test_the_binlog_reader_is_refused_with_the_same_clear_error(
    tls_moodle: MoodleDatabase, pki: Pki, sqs_queue: str
) -> None:
    settings = dataclasses.replace(
        tls_moodle.settings(SinkSettings(queue_url=sqs_queue), **FAST),
        source=reader_tls(tls_moodle, pki, ca=str(pki.wrong_ca)),
    )
    source = BinlogSource(settings, Checkpoint(Position("binlog.000001", 4)), blocking=False)
    try:
        with pytest.raises(SourceError, match=r"binlog connection refused: TLS to mysql://.* is not trusted"):
            list(source)
    finally:
        source.close()


def test_require_tls_refuses_a_server_without_tls(moodle: MoodleDatabase) -> None:
    """The session's ordinary sandbox offers no TLS at all."""
    required = with_tls(moodle.writer, require=True)
    with pytest.raises(tls.TlsError, match="does not offer TLS, and TLS is required"):
        connect(required, autocommit=True)
    with pytest.raises(tls.TlsError, match="does not offer TLS"):
        current_end(with_tls(moodle.reader, require=True))


def test_a_link_that_is_not_encrypted_is_refused_even_if_the_driver_let_it_through(moodle: MoodleDatabase) -> None:
    """Belt and braces: with TLS required, the session's cipher is asked of the server after the
    handshake. Here the driver is told TLS is merely preferred (ssl=None) against a server without
    it, so only that check stands between us and a plaintext link."""
    required = with_tls(moodle.writer, require=True)
    kwargs = {"host": required.host, "port": required.port, "user": required.user, "password": required.password}
    with pytest.raises(tls.TlsError, match="is not encrypted"):
        tls.connect(required, {**kwargs, "ssl": None})
    # Without the requirement, the same link is allowed (and `check` names it, see preflight).
    plain = tls.connect(moodle.writer, {**kwargs, "ssl": None})
    try:
        assert tls.session_tls(plain) == ("", "")
    finally:
        plain.close()


def test_the_writer_account_needs_its_client_certificate(tls_moodle: MoodleDatabase, pki: Pki) -> None:
    no_certificate = with_tls(tls_moodle.writer, ca=str(pki.ca), require=True)
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(no_certificate, autocommit=True)
    assert refused.value.args[0] == 1045, "access denied: the account REQUIREs our subject"
    connect(writer_tls(tls_moodle, pki), autocommit=True).close()


def test_tls_options_reach_the_settings_and_bad_files_are_one_clear_line(pki: Pki, tmp_path: Path) -> None:
    params = {
        "source_dsn": "mysql://reader@db.example:3306/moodle",
        "source_ssl_ca": str(pki.ca),
        "source_require_tls": True,
        "writer_dsn": "mysql://writer@primary.example:3306/moodle",
        "writer_ssl_ca": str(pki.ca),
        "writer_ssl_cert": str(pki.client_cert),
        "writer_ssl_key": str(pki.client_key),
        "writer_ssl_verify_identity": False,
        "queue_url": "https://sqs.example/q",
    }
    settings = build_settings(params)
    assert settings.source.tls == TlsSettings(ca=str(pki.ca), require=True)
    assert settings.writer.tls == TlsSettings(
        ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key), verify_identity=False
    )
    assert settings.writer.tls.enabled and not TlsSettings().enabled

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(SettingsError, match="--writer-ssl-ca: the TLS files cannot be loaded"):
        tls_settings("writer", ca=str(not_pem))
    with pytest.raises(SettingsError, match=r"--source-ssl-ca: '/nonexistent/ca\.pem' is not a readable file"):
        tls_settings("source", ca="/nonexistent/ca.pem")
    with pytest.raises(SettingsError, match="--writer-ssl-key: a client key needs its certificate"):
        tls_settings("writer", key=str(pki.client_key))
    # A key that does not belong to the certificate.
    with pytest.raises(SettingsError, match="--writer-ssl-cert: the TLS files cannot be loaded"):
        tls_settings("writer", cert=str(pki.client_cert), key=str(pki.server_key))

    result = CliRunner().invoke(
        main,
        ["check", "--source-dsn", "mysql://r@127.0.0.1:1/m", "--writer-dsn", "mysql://w@127.0.0.1:1/m"],
        env={"CDC_OFFLOAD_WRITER_SSL_CA": str(not_pem), "CDC_OFFLOAD_QUEUE_URL": "q"},
    )
    assert result.exit_code == 2 and "--writer-ssl-ca" in result.output and "cannot be loaded" in result.output
    assert "Traceback" not in result.output
