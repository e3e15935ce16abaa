"""The slow but certain path: python-mysql-replication's own classes decode a watched table whose
columns the generated decoders cannot reproduce exactly (TIME, MySQL JSON, a latin1 text column
we need, a type we do not know). Equal output by construction, at the library's speed."""

from __future__ import annotations

from collections.abc import Sequence

from pymysql.protocol import MysqlPacket
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import TableMapEvent, UpdateRowsEvent, WriteRowsEvent

Buffer = bytes | bytearray

_EVENTS = frozenset({TableMapEvent, WriteRowsEvent, UpdateRowsEvent})


class _Control:
    """Stands in for the library's control connection: it only asks which server this is."""

    charset = "utf8mb4"

    def __init__(self, mariadb: bool) -> None:
        self._dbms = "mariadb" if mariadb else "mysql"

    def _get_dbms(self) -> str:
        return self._dbms


class LibraryRows:
    def __init__(
        self,
        table_map_packet: bytes,
        *,
        mariadb: bool,
        checksum: bool,
        post_header_lengths: Sequence[int],
        server_version: tuple[int, ...],
    ) -> None:
        """`table_map_packet`: the OK byte, the event header and body (and checksum)."""
        self._control = _Control(mariadb)
        self._checksum = checksum
        self._post_header_lengths = tuple(post_header_lengths)
        self._server_version = server_version
        event = self._wrap(table_map_packet, {}).event
        if event is None:
            raise ValueError("the library did not accept the table-map")
        self._table = event.get_table()

    def _wrap(self, packet: bytes, table_map: dict[int, object]) -> BinLogPacketWrapper:
        return BinLogPacketWrapper(
            MysqlPacket(packet, "utf8"),
            table_map,
            self._control,
            self._server_version,
            self._checksum,
            _EVENTS,
            None,
            None,
            None,
            None,
            False,
            False,
            False,
            True,
            False,
            False,
            self._post_header_lengths,
        )

    def _event(self, data: Buffer, packet: int, packet_end: int) -> object:
        raw = bytes(data[packet:packet_end])
        table_id = int.from_bytes(raw[20:26], "little")
        event = self._wrap(raw, {table_id: self._table}).event
        if event is None:
            raise ValueError("the library did not accept the rows event")
        return event

    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]:
        event = self._event(data, packet, packet_end)
        return [dict(row["values"]) for row in event.rows]  # type: ignore[attr-defined]

    def update_rows(
        self, data: Buffer, packet: int, packet_end: int, payload: int, end: int
    ) -> list[tuple[dict[str, object], dict[str, object]]]:
        event = self._event(data, packet, packet_end)
        return [(dict(row["before_values"]), dict(row["after_values"])) for row in event.rows]  # type: ignore[attr-defined]
