"""A replication source that serves a recorded binlog file: just enough of the MySQL protocol for
the fast reader to run unchanged against bytes real MySQL and MariaDB servers wrote.

It speaks the handshake (v10; mysql_native_password accepting anyone, or caching_sha2_password
checking a password by its full authentication: the RSA key exchange over plaintext, the password
itself over TLS when a certificate is given), answers the reader's queries
(`SHOW GLOBAL VARIABLES`, `SELECT @@global.binlog_checksum, @@version`, its `SET`s, and the
INFORMATION_SCHEMA.COLUMNS query a server without column names in its binlog is asked), and on
COM_BINLOG_DUMP / COM_BINLOG_DUMP_GTID sends what a server sends: a fake ROTATE, then the file's
events from its FORMAT_DESCRIPTION on, each as a binlog network packet, then EOF (the reader asks
for a non-blocking dump). Every command the reader sent is kept, so a test can check them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

EVENT_HEADER = 19
_CAPABILITIES = 0x0001 | 0x0008 | 0x0200 | 0x2000 | 0x8000 | 0x20000 | 0x80000
_OK = b"\x00\x00\x00\x02\x00\x00\x00"
_SALT = b"12345678" + b"9abcdefghijk"  # the handshake's 20-byte scramble
# The reader's INFORMATION_SCHEMA.COLUMNS query, as PyMySQL sends it (parameters quoted in).
_COLUMNS_QUERY = re.compile(
    r"FROM INFORMATION_SCHEMA\.COLUMNS WHERE TABLE_SCHEMA = '([^']*)' AND TABLE_NAME = '([^']*)'"
)
COLUMNS_FIELDS = (
    "COLUMN_NAME",
    "DATA_TYPE",
    "COLUMN_TYPE",
    "IS_NULLABLE",
    "CHARACTER_OCTET_LENGTH",
    "NUMERIC_PRECISION",
    "NUMERIC_SCALE",
    "DATETIME_PRECISION",
    "CHARACTER_SET_NAME",
)
# One INFORMATION_SCHEMA.COLUMNS row, in COLUMNS_FIELDS order (None is SQL NULL).
ColumnRow = Sequence[str | None]


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class RecordedEvent:
    offset: int  # where it starts in the file
    kind: int
    raw: bytes  # header, body and checksum, as on disk


@dataclass(frozen=True)
class RecordedFile:
    path: Path
    events: tuple[RecordedEvent, ...]
    server_version: str
    checksum: bool

    @property
    def mariadb(self) -> bool:
        return "mariadb" in self.server_version.lower()

    @property
    def can_write_column_names(self) -> bool:
        """Whether the server has `binlog_row_metadata` (MySQL 8.0.1+, MariaDB 10.5+)."""
        numbers = tuple(int(part) for part in self.server_version.split("-")[0].split(".")[:3])
        return numbers >= ((10, 5, 0) if self.mariadb else (8, 0, 1))


def read_binlog_file(path: Path) -> RecordedFile:
    data = path.read_bytes()
    assert data[:4] == b"\xfebin", f"{path.name} is not a binlog file"
    events = []
    at = 4
    while at + EVENT_HEADER <= len(data):
        size = int.from_bytes(data[at + 9 : at + 13], "little")
        if size < EVENT_HEADER or at + size > len(data):
            break  # a file cut mid-event (the server was still writing it)
        events.append(RecordedEvent(at, data[at + 4], data[at : at + size]))
        at += size
    fde = events[0]
    assert fde.kind == 0x0F, f"{path.name} does not start with a FORMAT_DESCRIPTION"
    version = fde.raw[EVENT_HEADER + 2 : EVENT_HEADER + 52].rstrip(b"\0").decode()
    return RecordedFile(path, tuple(events), version, fde.raw[-5] == 1)


def _lenenc_string(value: bytes | None) -> bytes:
    if value is None:
        return b"\xfb"  # NULL in a text-protocol row
    assert len(value) < 251
    return bytes([len(value)]) + value


def _column(name: str) -> bytes:
    parts = b"".join(_lenenc_string(v) for v in (b"def", b"", b"", b"", name.encode(), name.encode()))
    return parts + b"\x0c" + struct.pack("<HIBHB", 45, 1024, 253, 0, 0) + b"\x00\x00"


@dataclass
class ReplaySource:
    """Serves `recorded` to every connection, in a thread of the test process. With `password`,
    clients authenticate with caching_sha2_password; with `tls` (certificate, key), TLS is offered.
    `authentications` says how each client proved its password: "rsa" or "tls"."""

    recorded: RecordedFile
    server_id: int = 1
    password: str | None = None
    tls: tuple[Path, Path] | None = None
    # (schema, table) -> the INFORMATION_SCHEMA.COLUMNS rows to answer with, one list per query
    # in turn (the last is repeated): a table altered between two looks has two.
    columns: dict[tuple[str, str], list[list[ColumnRow]]] = field(default_factory=dict)
    # What `binlog_row_metadata` says; None: the variable does not exist (before MySQL 8.0.1 and
    # MariaDB 10.5). By default as the recorded server's version has it.
    row_metadata: str | None = "FULL"
    commands: list[bytes] = field(default_factory=list)
    authentications: list[str] = field(default_factory=list)
    _listener: socket.socket | None = None
    _thread: threading.Thread | None = None
    _answered: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.recorded.can_write_column_names:
            self.row_metadata = None

    @property
    def schema_queries(self) -> int:
        """How many INFORMATION_SCHEMA.COLUMNS queries were answered."""
        return sum(self._answered.values())

    def __enter__(self) -> ReplaySource:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="replay-source", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            # shutdown() wakes the accept() waiting in the serving thread; close() alone does not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def _serve(self) -> None:
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(connection,), daemon=True).start()

    # -- one client -------------------------------------------------------------------------------
    def _session(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            with sock:
                self._send(sock, 0, self._handshake())
                sequence, response = self._receive_numbered(sock)
                if self.tls is not None and len(response) == 32:  # an SSLRequest: TLS, then the response
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(*self.tls)
                    sock = context.wrap_socket(sock, server_side=True)
                    sequence, response = self._receive_numbered(sock)
                if not self._authenticate(sock, sequence):
                    return
                while True:
                    packet = self._receive(sock)
                    if not packet:
                        return
                    self.commands.append(packet)
                    if packet[0] == 0x03:
                        self._query(sock, packet[1:].decode())
                    elif packet[0] in (0x12, 0x1E):
                        self._dump(sock)
                        return
                    elif packet[0] == 0x01:
                        return
                    else:
                        self._send(sock, 1, _OK)
        except (OSError, ssl.SSLError):
            return

    def _authenticate(self, sock: socket.socket, sequence: int) -> bool:
        if self.password is None:
            self._send(sock, sequence + 1, _OK)
            return True
        # caching_sha2_password with an empty cache: always the full authentication.
        self._send(sock, sequence + 1, b"\x01\x04")
        sequence, answer = self._receive_numbered(sock)
        if answer == b"\x02":  # plaintext: the client asks for our RSA public key
            self._send(
                sock,
                sequence + 1,
                b"\x01"
                + _rsa_key()
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            )
            sequence, encrypted = self._receive_numbered(sock)
            oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
            mixed = _rsa_key().decrypt(encrypted, oaep)
            answer = bytes(byte ^ _SALT[n % len(_SALT)] for n, byte in enumerate(mixed))
            self.authentications.append("rsa")
        else:
            self.authentications.append("tls" if isinstance(sock, ssl.SSLSocket) else "cleartext")
        if answer.rstrip(b"\x00") != self.password.encode():
            self._send(sock, sequence + 1, b"\xff" + struct.pack("<H", 1045) + b"#28000Access denied")
            return False
        self._send(sock, sequence + 1, _OK)
        return True

    def _handshake(self) -> bytes:
        version = self.recorded.server_version.encode()
        salt = _SALT
        capabilities = _CAPABILITIES | (0x0800 if self.tls is not None else 0)  # CLIENT_SSL
        plugin = b"caching_sha2_password" if self.password is not None else b"mysql_native_password"
        return (
            b"\x0a"
            + version
            + b"\x00"
            + struct.pack("<I", 7)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", capabilities & 0xFFFF)
            + bytes([45])
            + struct.pack("<H", 2)
            + struct.pack("<H", capabilities >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + plugin
            + b"\x00"
        )

    def _query(self, sock: socket.socket, query: str) -> None:
        text = query.strip().upper()
        checksum = "CRC32" if self.recorded.checksum else "NONE"
        variables = {
            "version": self.recorded.server_version,
            "server_id": str(self.server_id),
            "log_bin": "ON",
            "log_bin_compress": "OFF",
            "binlog_transaction_compression": "OFF",
        }
        if self.row_metadata is not None:
            variables["binlog_row_metadata"] = self.row_metadata
        if text.startswith("SHOW GLOBAL VARIABLES"):
            wanted = [name for name in variables if f"'{name.upper()}'" in text]
            self._result(sock, ["Variable_name", "Value"], [[name, variables[name]] for name in wanted])
        elif text.startswith("SELECT @@GLOBAL.BINLOG_CHECKSUM, @@VERSION"):
            self._result(sock, ["@@global.binlog_checksum", "@@version"], [[checksum, self.recorded.server_version]])
        elif text == "SHOW SESSION STATUS LIKE 'SSL_CIPHER'":
            cipher = sock.cipher()[0] if isinstance(sock, ssl.SSLSocket) and sock.cipher() else ""
            self._result(sock, ["Variable_name", "Value"], [["Ssl_cipher", cipher]])
        elif found := _COLUMNS_QUERY.search(query):
            self._result(sock, list(COLUMNS_FIELDS), self._columns(found.group(1), found.group(2)))
        elif text.startswith("SET "):
            self._send(sock, 1, _OK)
        else:
            self._send(sock, 1, b"\xff" + struct.pack("<H", 1064) + b"#42000" + b"not served by the replay source")

    def _columns(self, schema: str, table: str) -> list[ColumnRow]:
        answers = self.columns.get((schema, table))
        if not answers:
            return []  # as a server answers an account that cannot see the table
        turn = self._answered.get((schema, table), 0)
        self._answered[(schema, table)] = turn + 1
        return answers[min(turn, len(answers) - 1)]

    def _result(self, sock: socket.socket, names: list[str], rows: Sequence[Sequence[str | None]]) -> None:
        packets = [bytes([len(names)])] + [_column(name) for name in names] + [b"\xfe\x00\x00\x02\x00"]
        packets += [b"".join(_lenenc_string(None if v is None else v.encode()) for v in row) for row in rows]
        packets.append(b"\xfe\x00\x00\x02\x00")
        for number, packet in enumerate(packets, start=1):
            self._send(sock, number, packet)

    def _dump(self, sock: socket.socket) -> None:
        recorded = self.recorded
        rotate = struct.pack("<IBIIIH", 0, 0x04, self.server_id, 0, 0, 0x20)
        rotate += struct.pack("<Q", 4) + recorded.path.name.encode()
        size = len(rotate) + (4 if recorded.checksum else 0)
        rotate = rotate[:9] + struct.pack("<I", size) + rotate[13:]
        if recorded.checksum:
            rotate += struct.pack("<I", zlib.crc32(rotate))
        sequence = 1
        out = bytearray()
        # Like the servers: the FORMAT_DESCRIPTION goes out without LOG_EVENT_BINLOG_IN_USE_F (its
        # checksum was computed without it).
        fde = recorded.events[0].raw
        fde = fde[:17] + bytes([fde[17] & ~0x01]) + fde[18:]
        for event in (rotate, fde, *(e.raw for e in recorded.events[1:])):
            payload = b"\x00" + event
            while True:  # 16 MiB packets are split as the server splits them
                part, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
                out += len(part).to_bytes(3, "little") + bytes([sequence & 0xFF]) + part
                sequence += 1
                if len(part) < 0xFFFFFF:
                    break
        out += (5).to_bytes(3, "little") + bytes([sequence & 0xFF]) + b"\xfe\x00\x00\x02\x00"
        sock.sendall(bytes(out))

    # -- framing ----------------------------------------------------------------------------------
    @staticmethod
    def _send(sock: socket.socket, sequence: int, payload: bytes) -> None:
        sock.sendall(len(payload).to_bytes(3, "little") + bytes([sequence & 0xFF]) + payload)

    @staticmethod
    def _receive(sock: socket.socket) -> bytes:
        return ReplaySource._receive_numbered(sock)[1]

    @staticmethod
    def _receive_numbered(sock: socket.socket) -> tuple[int, bytes]:
        header = _exactly(sock, 4)
        if not header:
            return 0, b""
        return header[3], _exactly(sock, int.from_bytes(header[:3], "little"))


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return b""
        chunks += chunk
    return bytes(chunks)
