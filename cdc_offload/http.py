"""The HTTP surface: /metrics, /healthz, /readyz and /ledger/users/<id>. Nothing else answers 200."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cdc_offload import logs
from cdc_offload.health import Health
from cdc_offload.store import LedgerEntry

_LEDGER_PATH = re.compile(r"^/ledger/users/(\d{1,19})$")

LedgerLookup = Callable[[int], list[LedgerEntry]]
# outbox ids → their recipients' rows (the delivery status per copy), as JSON-ready dicts.
RecipientLookup = Callable[[list[int]], list[dict[str, object]]]


class Exported(Protocol):
    """Whatever owns the registry served on /metrics (the sidecar's, or a delivery worker's)."""

    registry: CollectorRegistry


class _Handler(BaseHTTPRequestHandler):
    server: OperatorServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok = self.server.health.healthy()
            self._json(200 if ok else 503, {"status": "ok" if ok else "stalled", "role": self.server.health.role})
        elif path == "/readyz":
            ok = self.server.health.ready()
            self._json(200 if ok else 503, {"ready": ok, "role": self.server.health.role})
        elif match := _LEDGER_PATH.match(path):
            self._ledger(int(match.group(1)))
        else:
            self._json(404, {"error": "not found"})

    def _ledger(self, userid: int) -> None:
        try:
            entries = self.server.ledger_lookup(userid)
        except Exception as error:  # noqa: BLE001 - a failed lookup is a 503, never a traceback
            logs.warning("ledger_lookup_failed", user_id=userid, error=type(error).__name__)
            self._json(503, {"error": "ledger unavailable"})
            return
        rows = [dataclasses.asdict(e) for e in entries]
        if self.server.recipient_lookup is not None and rows:
            try:
                copies = self.server.recipient_lookup([int(row["outbox_id"]) for row in rows])
            except Exception as error:  # noqa: BLE001 - the rows still answer; the copies say unavailable
                logs.warning("recipient_lookup_failed", user_id=userid, error=type(error).__name__)
                copies = []
            for row in rows:
                row["recipients"] = [c for c in copies if c["outbox_id"] == row["outbox_id"]]
        self._json(200, {"user_id": userid, "rows": rows})

    def _json(self, status: int, body: object) -> None:
        self._reply(status, orjson.dumps(body), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        # Request lines go nowhere: the access log is not worth a line per scrape.
        return


class OperatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Exported,
        health: Health,
        ledger_lookup: LedgerLookup,
        recipient_lookup: RecipientLookup | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.health = health
        self.ledger_lookup = ledger_lookup
        self.recipient_lookup = recipient_lookup

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
