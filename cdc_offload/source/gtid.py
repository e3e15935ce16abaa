"""GTID state at a transaction boundary, the one parsing and rendering every reader uses (a
checkpoint written by one reader must mean the same to the other): MariaDB's last GTID per
replication domain (`GtidState`, the `gtid_binlog_pos` form) or MySQL's executed set
(`MysqlGtidSet`, `uuid:1-100,...`). `gtid_state` picks one for the server at hand; each refuses
the other family's GTID events, which no honest server sends. The rendered text is cached because
every commit asks for it.
"""

from __future__ import annotations

from cdc_offload.source.server_facts import SourceRefused


class GtidState:
    """MariaDB: the last GTID seen per replication domain, rendered like `gtid_binlog_pos`."""

    __slots__ = ("_per_domain", "_text")

    def __init__(self, text: str | None) -> None:
        self._per_domain: dict[int, str] = {}
        for raw in (text or "").split(","):
            part = raw.strip()
            if part.count("-") == 2 and part.split("-")[0].isdigit():
                self._per_domain[int(part.split("-")[0])] = part
        self._text: str | None = self._render()

    def note(self, domain: int, gtid: str) -> None:
        per_domain = self._per_domain
        per_domain[domain] = gtid
        self._text = gtid if len(per_domain) == 1 else None

    def note_event(self, sid: bytes, gno: int) -> None:
        raise SourceRefused("a MySQL GTID event from a server that said it is MariaDB: the stream cannot be trusted")

    def render(self) -> str | None:
        text = self._text
        if text is None:
            text = self._text = self._render()
        return text

    def _render(self) -> str | None:
        return ",".join(self._per_domain[d] for d in sorted(self._per_domain)) or None


class MysqlGtidSet:
    """MySQL's executed GTID set (`uuid:1-100:120,uuid2:7`), grown one GTID event at a time.

    Rendered as python-mysql-replication's `GtidSet` renders it (UUIDs in the order first seen,
    intervals merged and sorted), so a checkpoint means the same whichever reader wrote it; encoded
    as MySQL's `Gtid_set::encode` for COM_BINLOG_DUMP_GTID.
    """

    __slots__ = ("_intervals", "_text")

    def __init__(self, text: str | None) -> None:
        # uuid -> sorted, disjoint, non-adjacent [start, end) intervals
        self._intervals: dict[str, list[list[int]]] = {}
        for raw in (text or "").replace("\n", "").split(","):
            part = raw.strip()
            if not part:
                continue
            uuid, _, ranges = part.partition(":")
            if len(uuid.replace("-", "")) != 32 or not ranges:
                raise ValueError(f"{part!r} is not a MySQL GTID set member (uuid:1-5:7)")
            for interval in ranges.split(":"):
                first, _, last = interval.partition("-")
                self._add_interval(uuid.lower(), int(first), int(last or first) + 1)
        self._text: str | None = None

    def _add_interval(self, uuid: str, start: int, end: int) -> None:
        merged = [start, end]
        kept: list[list[int]] = []
        for interval in self._intervals.get(uuid, []):
            if interval[1] < merged[0] or interval[0] > merged[1]:
                kept.append(interval)
            else:
                merged = [min(merged[0], interval[0]), max(merged[1], interval[1])]
        kept.append(merged)
        kept.sort()
        self._intervals[uuid] = kept
        self._text = None

    def add(self, uuid: str, gno: int) -> None:
        intervals = self._intervals.get(uuid)
        if intervals and intervals[-1][1] == gno:
            intervals[-1][1] = gno + 1  # the usual case: the next transaction of the same server
            self._text = None
        else:
            self._add_interval(uuid, gno, gno + 1)

    def note(self, domain: int, gtid: str) -> None:
        raise SourceRefused("a MariaDB GTID event from a server that said it is MySQL: the stream cannot be trusted")

    def note_event(self, sid: bytes, gno: int) -> None:
        """A GTID event's 16-byte SID and its number."""
        h = sid.hex()
        self.add(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", gno)

    def render(self) -> str | None:
        text = self._text
        if text is None:
            text = self._text = ",".join(
                uuid + ":" + ":".join(f"{s}-{e - 1}" if e - s > 1 else str(s) for s, e in intervals)
                for uuid, intervals in self._intervals.items()
            )
        return text or None

    def encode(self) -> bytes:
        """MySQL's binary GTID set: n_sids (8), then per UUID its 16 bytes, n_intervals (8) and each
        interval's start and exclusive end (8 + 8), all little-endian."""
        parts = [len(self._intervals).to_bytes(8, "little")]
        for uuid, intervals in self._intervals.items():
            parts.append(bytes.fromhex(uuid.replace("-", "")))
            parts.append(len(intervals).to_bytes(8, "little"))
            for start, end in intervals:
                parts.append(start.to_bytes(8, "little") + end.to_bytes(8, "little"))
        return b"".join(parts)


def gtid_state(text: str | None, mariadb: bool) -> GtidState | MysqlGtidSet:
    """The state a stream starts from: the checkpoint's GTID text, read as the server's family.
    A checkpoint GTID that is not a MySQL set (another server's) is dropped on MySQL; the set grows
    from this stream's GTID events."""
    if mariadb:
        return GtidState(text)
    try:
        return MysqlGtidSet(text)
    except ValueError:
        return MysqlGtidSet(None)
