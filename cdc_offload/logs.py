"""One JSON object per line on stdout. Callers pass an event name and ids, never content."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# Libraries that log request bodies or connection settings at DEBUG: held at WARNING whatever
# --log-level says, so an outbox body (a password) can never reach the log through them.
_QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "pymysqlreplication", "moto", "werkzeug")

_LOGGER = logging.getLogger("cdc_offload")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage() if record.name.startswith("cdc_offload") else "library_message",
        }
        if not record.name.startswith("cdc_offload"):
            # A library's own text, at WARNING or above only; its arguments are left out.
            entry["logger"] = record.name
            entry["message"] = str(record.msg)[:300]
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception text from a driver can quote a statement's values.
            entry["error"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO") -> None:
    # None of these reach our JSON lines; collecting them (a stack walk for the caller's file and
    # line) was a third of the cost of a line, and a busy round logs one line per row.
    logging._srcfile = None  # the logging HOWTO's "Optimization" switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def _emit(level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
    if _LOGGER.isEnabledFor(level):
        _LOGGER.log(level, event, extra={"fields": fields}, exc_info=exc_info)


def debug(event: str, **fields: Any) -> None:
    _emit(logging.DEBUG, event, fields)


def info(event: str, **fields: Any) -> None:
    _emit(logging.INFO, event, fields)


def warning(event: str, **fields: Any) -> None:
    _emit(logging.WARNING, event, fields)


def error(event: str, **fields: Any) -> None:
    _emit(logging.ERROR, event, fields)
