"""The last MariaDB GTID seen per replication domain, rendered like `gtid_binlog_pos`.

Same parsing and rendering as `cdc_offload.source` (a checkpoint written by one reader must mean
the same to the other); the rendered text is cached because every commit asks for it.
"""

from __future__ import annotations


class GtidState:
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

    def render(self) -> str | None:
        text = self._text
        if text is None:
            text = self._text = self._render()
        return text

    def _render(self) -> str | None:
        return ",".join(self._per_domain[d] for d in sorted(self._per_domain)) or None
