"""An AWS stand-in for benchmarks: the few SQS (JSON protocol) and SES v2 calls the sidecar makes,
each answered after a fixed accept latency (50 ms, like AWS), with no throughput cap (a thread per
connection), recording every message so a benchmark can check each email arrived exactly once.

moto is the correctness oracle in the tests but tops out at ~270 messages/s here, so a benchmark
through it would measure moto."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class _Handler(BaseHTTPRequestHandler):
    server: AwsStandIn
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms), which would be measured as AWS latency.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.server.latency)  # AWS's accept latency, the point of the stand-in
        target = self.headers.get("X-Amz-Target", "")
        if target == "AmazonSQS.SendMessageBatch":
            request = orjson.loads(body)
            ok = []
            for entry in request["Entries"]:
                self.server.record(entry["MessageBody"])
                ok.append(
                    {
                        "Id": entry["Id"],
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                    }
                )
            self._json({"Successful": ok, "Failed": []}, "application/x-amz-json-1.0")
        elif target == "AmazonSQS.SendMessage":
            request = orjson.loads(body)
            self.server.record(request["MessageBody"])
            digest = hashlib.md5(request["MessageBody"].encode()).hexdigest()
            self._json({"MessageId": str(uuid.uuid4()), "MD5OfMessageBody": digest}, "application/x-amz-json-1.0")
        elif self.path.startswith("/v2/email/outbound-emails"):
            request = orjson.loads(body)
            tags = {t["Name"]: t["Value"] for t in request.get("EmailTags", [])}
            self.server.record_key(tags.get("outbox_id", ""))
            self._json({"MessageId": str(uuid.uuid4())}, "application/json")
        else:
            self._json({"__type": "UnknownOperationException"}, "application/x-amz-json-1.0", 400)

    def do_GET(self) -> None:
        if self.path.startswith("/v2/email/account"):
            self._json(
                {"SendQuota": {"MaxSendRate": 0, "Max24HourSend": 1e9, "SentLast24Hours": 0}}, "application/json"
            )
        else:
            self._json({}, "application/json", 404)

    def _json(self, payload: Any, content_type: str, status: int = 200) -> None:
        data = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        return


class AwsStandIn(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, latency: float = 0.05) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, message_body: str) -> None:
        self.record_key(str(orjson.loads(message_body)["outbox_id"]))

    def record_key(self, key: str) -> None:
        with self._lock:
            self.received[key] += 1

    def start(self) -> AwsStandIn:
        threading.Thread(target=self.serve_forever, daemon=True, name="aws-standin").start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
