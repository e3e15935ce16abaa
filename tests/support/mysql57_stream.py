"""A MySQL 5.7-shaped binlog file made from one a real MariaDB wrote with binlog_row_metadata=NO_LOG.

No MySQL 5.7 server can run here. What makes a 5.7 binlog different for the reader is that its
table-maps carry no optional metadata at all (no names, no signedness, no charsets), and MariaDB
with NO_LOG writes exactly such table-maps, for real IOMAD-shaped rows. The rest is re-framed the
way MySQL writes it: the 5.6.41 recorded file's FORMAT_DESCRIPTION relabelled 5.7.44 (its GTID
post-header length set to 5.7's 42), a MySQL GTID event (5.7's layout, logical timestamps
included) and a `BEGIN` query for each transaction, version 2 rows events (MySQL's; MariaDB writes
version 1), XIDs as written, DDL as plain queries. MariaDB's own events (GTID lists, annotations,
checkpoints) are dropped. Every event gets its MySQL log position and a CRC32.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from tests.support.binlog_replay import EVENT_HEADER, read_binlog_file

RECORDED_56 = Path(__file__).parent.parent / "data" / "mysql-binlogs" / "binlog_56_gtid_reserved_word.000001"
VERSION = "5.7.44-log"
SOURCE_UUID = bytes.fromhex("57575757575757575757575757575757")

_GTID, _QUERY, _XID, _TABLE_MAP, _FDE = 0x21, 0x02, 0x10, 0x13, 0x0F
_MARIADB_GTID = 0xA2
_ROWS_V1_TO_V2 = {0x17: 0x1E, 0x18: 0x1F, 0x19: 0x20}
_GTID_POST_HEADER_57 = 42


def _event(timestamp: int, kind: int, server_id: int, body: bytes, at: int, flags: int = 0) -> bytes:
    size = EVENT_HEADER + len(body) + 4
    raw = struct.pack("<IBIIIH", timestamp, kind, server_id, size, at + size, flags) + body
    return raw + struct.pack("<I", zlib.crc32(raw))


def _format_description() -> bytes:
    fde = bytearray(read_binlog_file(RECORDED_56).events[0].raw)
    fde[EVENT_HEADER + 2 : EVENT_HEADER + 52] = VERSION.encode().ljust(50, b"\0")
    fde[EVENT_HEADER + 57 + _GTID - 1] = _GTID_POST_HEADER_57
    fde[17] &= ~0x01  # not "in use": the file is complete
    fde[-4:] = struct.pack("<I", zlib.crc32(bytes(fde[:-4])))
    return bytes(fde)


def _query(db: bytes, text: bytes) -> bytes:
    # thread id, exec time, db length, error code, status variables length (none), db, NUL, text.
    return struct.pack("<IIBHH", 1, 0, len(db), 0, 0) + db + b"\0" + text


def convert(mariadb_file: Path, out: Path) -> Path:
    """Writes the 5.7-shaped copy of `mariadb_file` (CRC32 checksums, as both servers default to)."""
    recorded = read_binlog_file(mariadb_file)
    assert recorded.checksum, "the MariaDB file is written with CRC32"
    data = bytearray(b"\xfebin")
    data += _format_description()
    gno = 0
    for event in recorded.events[1:]:
        raw, kind = event.raw, event.kind
        timestamp, server_id, flags = struct.unpack_from("<I", raw)[0], struct.unpack_from("<I", raw, 5)[0], 0
        body = raw[EVENT_HEADER:-4]
        if kind == _MARIADB_GTID:
            gno += 1
            gtid = struct.pack("<B16sQBQQ", 1, SOURCE_UUID, gno, 2, gno - 1, gno)
            data += _event(timestamp, _GTID, server_id, gtid, len(data))
            if not body[12] & 0x01:  # not standalone: MariaDB's GTID event stands for BEGIN
                data += _event(timestamp, _QUERY, server_id, _query(b"", b"BEGIN"), len(data), 0x08)
        elif kind == _QUERY:
            status_length = struct.unpack_from("<H", body, 11)[0]
            db_at = 13 + status_length
            db = body[db_at : db_at + body[8]]
            text = body[db_at + body[8] + 1 :]
            data += _event(timestamp, _QUERY, server_id, _query(db, text), len(data), flags)
        elif kind in (_TABLE_MAP, _XID):
            data += _event(timestamp, kind, server_id, body, len(data))
        elif kind in _ROWS_V1_TO_V2:
            # Version 2 adds the extra-data length (2: none) after the table id and flags.
            data += _event(timestamp, _ROWS_V1_TO_V2[kind], server_id, body[:8] + b"\x02\x00" + body[8:], len(data))
    out.write_bytes(bytes(data))
    return out
