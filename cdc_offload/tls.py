"""TLS to the two servers: the PyMySQL arguments for a DSN's `TlsSettings`, clear errors when a
certificate or host name is refused, and the check that a connection in use is really encrypted.

Every connection this program opens (the writer's, the preflight's, the binlog reader's control and
dump connections) goes through `connect`, so a setting cannot apply to one and not another.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import pymysql
import pymysql.connections
import pymysql.cursors

from cdc_offload.settings import Dsn, TlsSettings

# The client library's own code for "SSL connection error" (CR_SSL_CONNECTION_ERROR).
CR_SSL_CONNECTION_ERROR = 2026


class TlsError(pymysql.err.OperationalError):
    """TLS was asked for and the connection does not meet it: refused certificate, wrong host
    name, a server without TLS, or a link that turned out not to be encrypted. Its text is meant
    for the operator and holds no secret (paths, host names and the verifier's reason only)."""

    def __init__(self, message: str) -> None:
        super().__init__(CR_SSL_CONNECTION_ERROR, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def pymysql_kwargs(tls: TlsSettings) -> dict[str, Any]:
    """`ssl=` for PyMySQL when TLS is on (PyMySQL then refuses a server that does not offer it);
    nothing when it is off, which leaves PyMySQL's default."""
    if not tls.enabled:
        return {}
    try:
        return {"ssl": tls.context()}
    except OSError as error:
        # Checked at start-up; this is a file changed since (a broken certificate rotation).
        detail = getattr(error, "reason", None) or error.strerror or type(error).__name__
        raise TlsError(f"cannot load the TLS files ({detail}): check the CA, certificate and key paths") from None


@functools.cache
def _opportunistic_context() -> ssl.SSLContext:
    """The context PyMySQL builds for its opportunistic TLS (no TLS settings: encrypt when the
    server offers it, verify nothing), built once per process. PyMySQL builds it per connection
    with `create_default_context`, which reads the system CA bundle (~50 ms of CPU here) that a
    context verifying nothing never uses; every reader process would pay it again."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3
    return context


class _Connection(pymysql.connections.Connection):
    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if isinstance(sslp, dict) and not sslp:
            return _opportunistic_context()
        context: ssl.SSLContext = super()._create_ssl_ctx(sslp)  # type: ignore[misc]
        return context


def connect(dsn: Dsn, kwargs: dict[str, Any]) -> pymysql.Connection[Any]:
    """`pymysql.connect(**kwargs)` for `dsn`, with TLS failures turned into one clear `TlsError`
    and, when TLS is on, the encryption of the new connection verified before it is used."""
    if "ssl" not in kwargs:
        kwargs = {**kwargs, **pymysql_kwargs(dsn.tls)}
    try:
        connection: pymysql.Connection[Any] = _Connection(**kwargs)
    except pymysql.err.OperationalError as error:
        problem = _tls_problem(error, dsn)
        if problem is None:
            raise
        raise TlsError(problem) from None
    if dsn.tls.enabled:
        try:
            cipher = session_cipher(connection)
        except pymysql.err.Error:
            connection.close()
            raise
        if not cipher:
            connection.close()
            raise TlsError(f"the connection to {dsn} is not encrypted (no TLS cipher in use), and TLS is required")
    return connection


def session_cipher(connection: pymysql.Connection[Any]) -> str:
    """The TLS cipher the server reports for this session; empty when the link is plaintext."""
    with connection.cursor(pymysql.cursors.Cursor) as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cursor.fetchone()
    return str(row[1]) if row and row[1] else ""


def session_tls(connection: pymysql.Connection[Any]) -> tuple[str, str]:
    """(TLS version, cipher) of this session as the server sees it; ("", "") when plaintext."""
    with connection.cursor(pymysql.cursors.Cursor) as cursor:
        cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
        found = {str(name).lower(): str(value or "") for name, value in cursor.fetchall()}
    return found.get("ssl_version", ""), found.get("ssl_cipher", "")


def _tls_problem(error: pymysql.err.OperationalError, dsn: Dsn) -> str | None:
    """An operator's sentence for a TLS failure, or None when the error is not about TLS."""
    original = getattr(error, "original_exception", None)
    text = str(error.args[1]) if len(error.args) > 1 else ""
    if isinstance(original, ssl.SSLCertVerificationError):
        reason = original.verify_message or "certificate verify failed"
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            return (
                f"TLS to {dsn} refused: the server's certificate does not name {dsn.host!r} ({reason}). "
                "Connect by a name the certificate holds, or turn identity verification off"
            )
        return (
            f"TLS to {dsn} refused: the server's certificate is not trusted ({reason}). "
            "Check the CA file (--source-ssl-ca / --writer-ssl-ca)"
        )
    if isinstance(original, ssl.SSLError):
        return f"TLS handshake with {dsn} failed ({original.reason or type(original).__name__})"
    if error.args and error.args[0] == CR_SSL_CONNECTION_ERROR:
        return (
            f"{dsn} does not offer TLS, and TLS is required: give the server --ssl-cert and --ssl-key "
            f"({text or 'SSL connection error'})"
        )
    return None
