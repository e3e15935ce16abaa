"""How fast each binlog reader gets through a busy Moodle binlog, side by side.

    python benchmarks/bench_reader.py [--quick]

Starts its own throwaway MariaDB, writes the busy workload of fast-path-measurements.md (and a
"login storm" variant where 30% of transactions also UPDATE a full mdl_user row), then times,
interleaved, median of 3: python-mysql-replication default iteration (every event, every row
decoded), the library with only_tables + freeze_schema, BinlogSource, FastBinlogReader, and
`mariadb-binlog -v` decoding the same files. Prints a table; writes benchmarks/results/reader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _binlog_workload as workload
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import RowsEvent, WriteRowsEvent

from cdc_offload.model import ChangeEvent, Checkpoint, EventCounts, Position
from cdc_offload.sandbox import MariaDBSandbox, find_executable
from cdc_offload.settings import Dsn, Settings, SinkSettings
from cdc_offload.source import BinlogSource
from cdc_offload.source.binlog import FastBinlogReader

RESULTS = Path(__file__).resolve().parent / "results" / "reader.json"
READERS = ("library_default", "library_only_tables_frozen", "binlog_source", "fast_reader", "mariadb_binlog_v")
LABELS = {
    "library_default": "library, default (decode all)",
    "library_only_tables_frozen": "library, only_tables + freeze_schema",
    "binlog_source": "BinlogSource",
    "fast_reader": "FastBinlogReader",
    "mariadb_binlog_v": "mariadb-binlog -v (C)",
}


@dataclass
class Variant:
    name: str
    database: str
    start: Position
    end: Position
    files: list[Path]
    transactions: int
    watched_inserts: int
    events: int = 0
    all_rows: int = 0
    bytes: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def _settings(server: MariaDBSandbox, database: str, server_id: int) -> Settings:
    dsn = Dsn(server.host, server.port, "root", database)
    return Settings(source=dsn, writer=dsn, sink=SinkSettings(queue_url="http://unused"), server_id=server_id)


def _connection(server: MariaDBSandbox) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "user": "root", "passwd": "", "charset": "utf8mb4"}


def run_library_default(server: MariaDBSandbox, variant: Variant) -> int:
    stream = BinLogStreamReader(
        connection_settings=_connection(server),
        server_id=9_101,
        resume_stream=True,
        blocking=False,
        log_file=variant.start.file,
        log_pos=variant.start.offset,
        enable_logging=False,
    )
    rows = 0
    try:
        for event in stream:
            if isinstance(event, RowsEvent):
                rows += len(event.rows)
    finally:
        stream.close()
    return rows


def run_library_filtered(server: MariaDBSandbox, variant: Variant) -> int:
    stream = BinLogStreamReader(
        connection_settings=_connection(server),
        server_id=9_102,
        resume_stream=True,
        blocking=False,
        log_file=variant.start.file,
        log_pos=variant.start.offset,
        only_events=[WriteRowsEvent, XidEvent, QueryEvent, RotateEvent, MariadbGtidEvent],
        only_schemas=[variant.database],
        only_tables=["mdl_user", "mdl_email"],
        freeze_schema=True,
        enable_logging=False,
    )
    rows = 0
    try:
        for event in stream:
            if isinstance(event, WriteRowsEvent):
                rows += len(event.rows)
    finally:
        stream.close()
    return rows


def _source_items(reader: Any) -> list[Any]:
    try:
        return list(reader)
    finally:
        reader.close()


def run_binlog_source(server: MariaDBSandbox, variant: Variant) -> int:
    items = _source_items(
        BinlogSource(_settings(server, variant.database, 9_103), Checkpoint(variant.start), blocking=False)
    )
    return sum(isinstance(item, ChangeEvent) for item in items)


def run_fast_reader(server: MariaDBSandbox, variant: Variant) -> int:
    reader = FastBinlogReader(_settings(server, variant.database, 9_104), Checkpoint(variant.start), blocking=False)
    return sum(isinstance(item, ChangeEvent) for item in _source_items(reader))


def _mariadb_binlog_command(variant: Variant) -> list[str]:
    tool = find_executable("mariadb-binlog", "mysqlbinlog")
    return [tool, "-v", f"--start-position={variant.start.offset}", *map(str, variant.files)]


def run_mariadb_binlog(server: MariaDBSandbox, variant: Variant) -> int:
    subprocess.run(_mariadb_binlog_command(variant), stdout=subprocess.DEVNULL, check=True)
    return variant.all_rows


RUNNERS: dict[str, Callable[[MariaDBSandbox, Variant], int]] = {
    "library_default": run_library_default,
    "library_only_tables_frozen": run_library_filtered,
    "binlog_source": run_binlog_source,
    "fast_reader": run_fast_reader,
    "mariadb_binlog_v": run_mariadb_binlog,
}


def prepare(server: MariaDBSandbox, name: str, transactions: int, login_storm: bool) -> Variant:
    database = f"bench_{name}"
    workload.create_schema(server.port, database)
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("FLUSH BINARY LOGS")  # each variant in files of its own
    finally:
        connection.close()
    start = server.binlog_end()
    began = time.perf_counter()
    written = workload.write_busy(server.port, database, transactions, login_storm=login_storm)
    print(f"  wrote {transactions:,} transactions in {time.perf_counter() - began:.1f} s", flush=True)
    end = server.binlog_end()
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("FLUSH BINARY LOGS")
    finally:
        connection.close()
    files = sorted(p for p in server.datadir.glob("binlog.[0-9]*") if start.file <= p.name <= end.file)
    variant = Variant(name, database, start, end, files, written.transactions, written.watched_rows)
    variant.bytes = sum(p.stat().st_size for p in files) - start.offset

    # Reference counts, outside the timed runs: every event (the fast reader reads them all) and
    # every row the C tool prints.
    items = _source_items(FastBinlogReader(_settings(server, database, 9_105), Checkpoint(start), blocking=False))
    variant.events = sum(count for item in items if isinstance(item, EventCounts) for _, count in item.counts)
    verbose = subprocess.run(_mariadb_binlog_command(variant), capture_output=True, check=True).stdout
    variant.all_rows = sum(
        verbose.count(marker) for marker in (b"\n### INSERT INTO", b"\n### UPDATE", b"\n### DELETE FROM")
    )

    # The two readers the sidecar can use must agree before their speed means anything.
    def plain(values: list[Any]) -> list[Any]:
        return [item for item in values if not isinstance(item, EventCounts)]

    library = plain(_source_items(BinlogSource(_settings(server, database, 9_106), Checkpoint(start), blocking=False)))
    fast = plain(items)
    mismatches = sum(a != b for a, b in zip(library, fast, strict=False)) + abs(len(library) - len(fast))
    if mismatches:
        raise SystemExit(f"{name}: FastBinlogReader and BinlogSource disagree ({mismatches} items)")
    assert sum(isinstance(item, ChangeEvent) for item in fast) == written.watched_rows
    print(
        f"  {variant.events:,} events, {variant.bytes / 1e6:.1f} MB, {variant.all_rows:,} rows, "
        f"{written.watched_rows:,} watched INSERT rows; readers agree (0 mismatches in {len(fast):,} items)",
        flush=True,
    )
    return variant


def measure(server: MariaDBSandbox, variant: Variant, runs: int) -> None:
    # Readers in non-blocking mode read to the end of the binlog: measure a variant before the
    # next one is written, runs interleaved across the readers.
    for run in range(runs):
        for reader in READERS:
            began = time.perf_counter()
            rows = RUNNERS[reader](server, variant)
            elapsed = time.perf_counter() - began
            variant.seconds.setdefault(reader, []).append(elapsed)
            variant.rows[reader] = rows
            print(f"  run {run + 1} {variant.name:11} {LABELS[reader]:38} {elapsed:8.2f} s", flush=True)


def report(variants: list[Variant], runs: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "mariadb": subprocess.run(
                [find_executable("mariadbd", "mysqld"), "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
        },
        "runs": runs,
        "quick": quick,
        "variants": {},
    }
    for variant in variants:
        readers: dict[str, Any] = {}
        for reader in READERS:
            median = statistics.median(variant.seconds[reader])
            readers[reader] = {
                "label": LABELS[reader],
                "seconds": variant.seconds[reader],
                "median_seconds": median,
                "events_per_s": variant.events / median,
                "rows": variant.rows[reader],
                "rows_per_s": variant.rows[reader] / median,
            }
        fast = readers["fast_reader"]["events_per_s"]
        out["variants"][variant.name] = {
            "transactions": variant.transactions,
            "events": variant.events,
            "bytes": variant.bytes,
            "rows_in_binlog": variant.all_rows,
            "watched_insert_rows": variant.watched_inserts,
            "readers": readers,
            "fast_reader_speedup": {
                reader: fast / readers[reader]["events_per_s"] for reader in READERS if reader != "fast_reader"
            },
        }
        print(
            f"\n{variant.name}: {variant.transactions:,} transactions, {variant.events:,} events, "
            f"{variant.bytes / 1e6:.1f} MB, {variant.all_rows:,} rows ({variant.watched_inserts:,} watched INSERTs)"
        )
        print(f"{'reader':40} {'events/s':>12} {'rows/s':>12} {'rows':>9} {'FastBinlogReader is':>20}")
        for reader in READERS:
            r = readers[reader]
            ratio = "" if reader == "fast_reader" else f"{fast / r['events_per_s']:.1f}x faster"
            print(f"{r['label']:40} {r['events_per_s']:12,.0f} {r['rows_per_s']:12,.0f} {r['rows']:9,} {ratio:>20}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 transactions and one run (a smoke test)")
    args = parser.parse_args()
    transactions, runs = (2_000, 1) if args.quick else (20_000, 3)
    if not shutil.which("mariadb-binlog") and not shutil.which("mysqlbinlog"):
        find_executable("mariadb-binlog", "mysqlbinlog")  # raises with the install hint
    server = MariaDBSandbox()
    server.start()
    try:
        variants = []
        for name, storm in (("busy", False), ("login_storm", True)):
            print(f"{name}: writing the workload", flush=True)
            variant = prepare(server, name, transactions, storm)
            measure(server, variant, runs)
            variants.append(variant)
        results = report(variants, runs, args.quick)
    finally:
        server.remove()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
