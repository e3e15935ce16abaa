"""The whole pipeline, timed: `cdc-offload run` as a real process against a MariaDB this script
starts and an AWS stand-in answering every call after 50 ms.

    python benchmarks/bench_pipeline.py [--quick] [--only seed,busy,scaling,latency,memory]

Prints a table per scenario and writes benchmarks/results/pipeline.json. Scenarios (issue 5):
  seed     2,000 users as (a) one bulk transaction, (b) IOMAD's 12 autocommit transactions per
           user; the sidecar catches up on the pre-written binlog; side by side, the original
           plugin's way over the same components (one user at a time: send, wait, delete).
  busy     a busy Moodle binlog (>= 20 unrelated rows per user) and a login-storm variant:
           events/s through the whole pipeline.
  scaling  100 / 1,000 / 5,000 / 20,000 users: time, time per user, peak memory.
  latency  a trickle of 20 users/s: commit on the primary -> suppression committed.
  memory   peak memory over a 200,000-row unrelated transaction and a 5,000-user transaction.

Memory is the sidecar's with its child processes (see Sidecar.peak_rss_mb).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _binlog_workload import create_schema as create_busy_schema
from _binlog_workload import write_busy
from aws_standin import AwsStandIn
from bench_reader import Variant, run_library_default, run_library_filtered, run_mariadb_binlog

from cdc_offload.demo.moodle import create_schema, create_user_iomad, create_users_bulk, make_users
from cdc_offload.demo.stack import AWS_ENV
from cdc_offload.model import Position
from cdc_offload.sandbox import MariaDBSandbox, find_executable, free_port

RESULTS = Path(__file__).resolve().parent / "results"
# Every sidecar started, so an aborted run leaves no process behind.
RUNNING: list[Sidecar] = []
HEARTBEATS = 'cdc_offload_binlog_events_total{type="heartbeat"'

QUEUE = "/123456789012/credential-emails"


@dataclass
class Sidecar:
    """`cdc-offload run` in its own process, so its memory is its own (and its children's)."""

    server: MariaDBSandbox
    database: str
    standin: AwsStandIn
    extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    port: int = field(default_factory=free_port)
    lines: list[dict[str, Any]] = field(default_factory=list)
    peak_pss_mb: float = 0.0
    # Reading PSS walks the page tables of every process of the tree: ~1 ms each here. Sampled
    # every 50 ms (with the tree found by reading all of /proc, ~8 ms) it took a quarter of one of
    # this machine's two cores from the sidecar it measured; the throughput runs sample less.
    memory_period: float = 0.05

    @property
    def schema(self) -> str:
        return f"cdc_{self.database}"

    def start(self) -> Sidecar:
        env = {
            **os.environ,
            **AWS_ENV,
            "AWS_ENDPOINT_URL": self.standin.endpoint,
            "CDC_OFFLOAD_SOURCE_DSN": self.server.url(database=self.database),
            "CDC_OFFLOAD_WRITER_DSN": self.server.url(database=self.database),
            "CDC_OFFLOAD_STATE_SCHEMA": self.schema,
            "CDC_OFFLOAD_QUEUE_URL": self.standin.endpoint + QUEUE,
            "CDC_OFFLOAD_METRICS_PORT": str(self.port),
            "CDC_OFFLOAD_METRICS_HOST": "127.0.0.1",
            # A backlog written before the sidecar starts must not be refused as too old.
            "CDC_OFFLOAD_MAX_EVENT_AGE": "3600",
            "CDC_OFFLOAD_AWS_CONCURRENCY": "32",
            "CDC_OFFLOAD_LOG_LEVEL": "WARNING",
            **self.extra,
        }
        subprocess.run(["cdc-offload", "init"], env=env, check=True, capture_output=True)
        self.process = subprocess.Popen(
            ["cdc-offload", "run", "--skip-checks", "--fail-closed-linger", "0", "--log-level", "INFO"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        RUNNING.append(self)
        threading.Thread(target=self._read_logs, daemon=True).start()
        threading.Thread(target=self._sample_memory, daemon=True).start()
        wait(lambda: self._status("/readyz") == 200, 60, "the sidecar to lead")
        return self

    def _read_logs(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue

    def _status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return int(response.status)
        except OSError:
            return 0

    def led_at(self) -> float:
        """Wall time of the "leading" log line: when it began reading from its checkpoint."""
        line = wait(lambda: next((x for x in self.lines if x.get("event") == "leading"), None), 30, "leading")
        return dt.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()

    def metric_sum(self, family: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        prefix = family if "{" in family else family + "{"
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    def peak_rss_mb(self) -> float:
        """Peak memory of the sidecar and the processes it started (the binlog reader and the fork
        server it comes from, multiprocessing's resource tracker): their PSS added up, which
        counts each shared page once, sampled every 50 ms; or the main process's own peak RSS
        (exact) if that is higher."""
        assert self.process is not None
        main = _peak_rss_mb(self.process.pid)
        return max(main, self.peak_pss_mb)

    def _sample_memory(self) -> None:
        assert self.process is not None
        while self.process.poll() is None:
            tree = (self.process.pid, *_descendants(self.process.pid))
            self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_mb(pid) for pid in tree))
            time.sleep(self.memory_period)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def _proc_mb(pid: int, file: str, field: str) -> float:
    """A kB field of /proc/PID/FILE in MB (0 once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in text.splitlines() if line.startswith(field)), 0.0)


def _peak_rss_mb(pid: int) -> float:
    return _proc_mb(pid, "status", "VmHWM:")


def _pss_mb(pid: int) -> float:
    return _proc_mb(pid, "smaps_rollup", "Pss:")


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from the kernel's per-thread child lists (the whole of /proc
    need not be read)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = {int(child) for child in children.read_text().split()}
            except (OSError, ValueError):
                continue  # a thread or process that just ended
            todo.extend(pids - found)
            found |= pids
    return found


def settle(server: MariaDBSandbox, quiet: float = 0.05, timeout: float = 60.0) -> None:
    """Wait until MariaDB has finished the work behind what was just written (InnoDB purge and
    page flushing use a core of two for seconds after a big write), so that no reader measured
    here pays for another's writes: until it uses under `quiet` of a core for half a second."""
    pid = (server.root / "mysqld.pid").read_text().strip()
    path = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        fields = path.read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    deadline = time.monotonic() + timeout
    before = cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)  # one sampling window
        now = cpu_seconds()
        if now - before < quiet * 0.5:
            return
        before = now


def wait(condition: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)  # polling with a deadline
    raise SystemExit(f"timed out waiting for {what}")


def connect(server: MariaDBSandbox, database: str | None = None) -> pymysql.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=server.port, user="root", database=database, autocommit=True)


def new_database(server: MariaDBSandbox, name: str) -> None:
    connection = connect(server)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
        cursor.execute(f"USE {name}")
        create_schema(cursor)
    connection.close()


# One connection per server for all the polling: each new PyMySQL connection builds a TLS context
# (~45 ms of CPU here), and ten polls a second took most of a core from the sidecar being measured.
_POLLERS: dict[int, pymysql.Connection[Any]] = {}


def ledger_done(server: MariaDBSandbox, schema: str) -> tuple[int, float | None]:
    connection = _POLLERS.get(server.port)
    if connection is None:
        connection = _POLLERS[server.port] = connect(server)
    with connection.cursor() as cursor:
        # A `claimed` row is not settled (AWS has not answered): counting it would stop the clock early.
        cursor.execute(
            f"SELECT COUNT(*), UNIX_TIMESTAMP(MAX(handled_at)) FROM `{schema}`.ledger WHERE status <> 'claimed'"
        )
        count, last = cursor.fetchone()
    return int(count), None if last is None else float(last)


def drain(server: MariaDBSandbox, sidecar: Sidecar, expected: int, timeout: float) -> float:
    """Seconds from the sidecar starting to read to the last suppression committed."""
    wait(lambda: ledger_done(server, sidecar.schema)[0] >= expected, timeout, f"{expected} ledger rows", 0.1)
    last = ledger_done(server, sidecar.schema)[1]
    assert last is not None
    return last - sidecar.led_at()


def exactly_once(standin: AwsStandIn, outbox_ids: list[int]) -> bool:
    return all(standin.received[str(i)] == 1 for i in outbox_ids)


def backlog(server: MariaDBSandbox, standin: AwsStandIn, database: str, write: Any) -> tuple[Sidecar, list[int]]:
    """Start once (saves the checkpoint at the end of binlog), stop, write, start again."""
    new_database(server, database)
    first = Sidecar(server, database, standin).start()
    first.stop()
    standin.received.clear()  # outbox ids restart in every database
    outbox_ids = write(connect(server, database))
    settle(server)
    return Sidecar(server, database, standin).start(), outbox_ids


def original_plugin(server: MariaDBSandbox, standin: AwsStandIn, database: str) -> float:
    """One user at a time: SendMessage, wait for AWS, guarded DELETE, next."""
    sqs = boto3.client("sqs", endpoint_url=standin.endpoint, region_name="us-east-1")
    connection = connect(server, database)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.id, e.userid, e.subject, e.body, u.email FROM mdl_email e JOIN mdl_user u ON u.id = e.userid "
            "WHERE e.sent IS NULL ORDER BY e.id"
        )
        rows = cursor.fetchall()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for outbox_id, userid, subject, body, email in rows:
            message = {"outbox_id": outbox_id, "recipient": email, "subject": subject, "html_body": body}
            sqs.send_message(QueueUrl=standin.endpoint + QUEUE, MessageBody=orjson.dumps(message).decode())
            cursor.execute("DELETE FROM mdl_email WHERE id = %s AND userid = %s AND sent IS NULL", (outbox_id, userid))
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def seed(server: MariaDBSandbox, standin: AwsStandIn, users: int) -> dict[str, Any]:
    def one_transaction(connection: Any) -> list[int]:
        return [o for _, o in create_users_bulk(connection, make_users(users))]

    def iomad(connection: Any) -> list[int]:
        return [create_user_iomad(connection, user)[1] for user in make_users(users)]

    results: dict[str, Any] = {"users": users}
    for name, writer in (("a_one_transaction", one_transaction), ("b_iomad_transactions", iomad)):
        sidecar, ids = backlog(server, standin, f"seed_{name}", writer)
        seconds = drain(server, sidecar, users, 600)
        results[name] = {
            "seconds": seconds,
            "exactly_once": exactly_once(standin, ids),
            "rss_mb": sidecar.peak_rss_mb(),
        }
        sidecar.stop()
    new_database(server, "seed_baseline")
    create_users_bulk(connect(server, "seed_baseline"), make_users(users, start=900_000))
    results["baseline_seconds"] = original_plugin(server, standin, "seed_baseline")
    for name in ("a_one_transaction", "b_iomad_transactions"):
        results[name]["speedup_vs_baseline"] = results["baseline_seconds"] / results[name]["seconds"]
    return results


def busy(server: MariaDBSandbox, standin: AwsStandIn, transactions: int, repeats: int) -> dict[str, Any]:
    """Each variant written `repeats` times (a database each); the pipeline and every reader it is
    compared with run over each copy, and the medians are compared: this 2-core machine's
    run-to-run spread is ±25% for any of them."""
    results: dict[str, Any] = {}
    readers = (
        ("library_default", run_library_default),
        ("library_only_tables_frozen", run_library_filtered),
        ("mariadb_binlog_v", run_mariadb_binlog),
    )
    for name, storm in (("busy", False), ("login_storm", True)):
        runs: list[dict[str, Any]] = []
        for repeat in range(repeats):
            database = f"bench_{name}_{repeat}"
            create_busy_schema(server.port, database)
            first = Sidecar(server, database, standin).start()
            first.stop()
            before = binlog_end(server)
            written = write_busy(server.port, database, transactions, login_storm=storm)
            after = binlog_end(server)
            settle(server)
            sidecar = Sidecar(server, database, standin, memory_period=0.25).start()
            users = written.watched_rows // 2
            seconds = drain(server, sidecar, users, 600)
            # The events the sidecar itself read (its own counter), not SHOW BINLOG EVENTS, which
            # also lists annotate events a replica is never sent. Counts are reported in batches;
            # a heartbeat after the backlog flushes the last one.
            wait(lambda reader=sidecar: reader.metric_sum(HEARTBEATS) > 0, 30, "a heartbeat")
            events = int(sidecar.metric_sum("cdc_offload_binlog_events_total") - sidecar.metric_sum(HEARTBEATS))
            run: dict[str, Any] = {
                "transactions": written.transactions,
                "events": events,
                "rows": count_rows(server, before, after),
                "users": users,
                "seconds": seconds,
                "rss_mb": sidecar.peak_rss_mb(),
            }
            sidecar.stop()
            # Side by side, the same stretch of binlog: the library's plain iteration (default
            # settings), its best configuration, and the C decoder.
            variant = Variant(
                name, database, Position(*before), Position(*after), binlog_files(server, before, after), 0, 0
            )
            for reader, runner in readers:
                settle(server)
                started = time.perf_counter()
                runner(server, variant)
                run[f"{reader}_seconds"] = time.perf_counter() - started
            runs.append(run)
        events = statistics.median(r["events"] for r in runs)
        seconds = statistics.median(r["seconds"] for r in runs)
        result: dict[str, Any] = {
            "transactions": runs[0]["transactions"],
            "events": int(events),
            "rows": runs[0]["rows"],
            "users": runs[0]["users"],
            "seconds": seconds,
            "events_per_s": events / seconds,
            "rows_per_s": runs[0]["rows"] / seconds,
            "rss_mb": max(r["rss_mb"] for r in runs),
            "runs": runs,
        }
        for reader, _ in readers:
            elapsed = statistics.median(r[f"{reader}_seconds"] for r in runs)
            result[f"{reader}_events_per_s"] = events / elapsed
            result[f"pipeline_vs_{reader}"] = elapsed / seconds
        results[name] = result
    return results


def binlog_files(server: MariaDBSandbox, start: tuple[str, int], end: tuple[str, int]) -> list[Path]:
    connection = connect(server)
    with connection.cursor() as cursor:
        cursor.execute("SHOW BINARY LOGS")
        names = [str(r[0]) for r in cursor.fetchall() if start[0] <= str(r[0]) <= end[0]]
    connection.close()
    return [server.datadir / name for name in names]


def binlog_end(server: MariaDBSandbox) -> tuple[str, int]:
    connection = connect(server)
    with connection.cursor() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        name, offset = cursor.fetchone()[:2]
    connection.close()
    return str(name), int(offset)


def count_rows(server: MariaDBSandbox, start: tuple[str, int], end: tuple[str, int]) -> int:
    """Rows in the stretch, all tables: what `mariadb-binlog -v` decodes (one `### INSERT|UPDATE|DELETE` each)."""
    command = [
        find_executable("mariadb-binlog", "mysqlbinlog"),
        "-v",
        f"--start-position={start[1]}",
        *map(str, binlog_files(server, start, end)),
    ]
    output = subprocess.run(command, capture_output=True, check=True).stdout
    return sum(output.count(marker) for marker in (b"\n### INSERT", b"\n### UPDATE", b"\n### DELETE"))


def scaling(server: MariaDBSandbox, standin: AwsStandIn, sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for users in sizes:

        def write(connection: Any, users: int = users) -> list[int]:
            ids: list[int] = []
            for start in range(0, users, 1000):
                ids += [o for _, o in create_users_bulk(connection, make_users(min(1000, users - start), start=start))]
            return ids

        sidecar, ids = backlog(server, standin, f"scale_{users}", write)
        seconds = drain(server, sidecar, users, 900)
        results[str(users)] = {
            "seconds": seconds,
            "ms_per_user": 1000 * seconds / users,
            "rss_mb": sidecar.peak_rss_mb(),
            "exactly_once": exactly_once(standin, ids),
        }
        sidecar.stop()
    return results


def latency(server: MariaDBSandbox, standin: AwsStandIn, rate: float, seconds: float) -> dict[str, Any]:
    database = "latency"
    new_database(server, database)
    sidecar = Sidecar(server, database, standin).start()
    standin.received.clear()
    connection = connect(server, database)
    committed: dict[int, float] = {}
    interval = 1.0 / rate
    next_at = time.monotonic()
    for n, user in enumerate(make_users(int(rate * seconds))):
        time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the trickle
        next_at += interval
        outbox_id = create_user_iomad(connection, user)[1]
        committed[outbox_id] = time.time()
        del n
    wait(lambda: ledger_done(server, sidecar.schema)[0] >= len(committed), 60, "the trickle resolved", 0.1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT outbox_id, UNIX_TIMESTAMP(handled_at) FROM `{sidecar.schema}`.ledger WHERE status <> 'claimed'"
        )
        handled = {int(r[0]): float(r[1]) for r in cursor.fetchall()}
    sidecar.stop()
    delays = sorted(1000 * (handled[i] - t) for i, t in committed.items())
    return {
        "users": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": delays[max(0, int(len(delays) * 0.99) - 1)],
        "max_ms": delays[-1],
    }


def memory(server: MariaDBSandbox, standin: AwsStandIn, big_rows: int, big_users: int) -> dict[str, Any]:
    database = "memory"
    new_database(server, database)
    sidecar = Sidecar(server, database, standin).start()
    idle = sidecar.peak_rss_mb()
    connection = connect(server, database)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION max_recursive_iterations = 1000000")  # MariaDB's recursion cap
        cursor.execute(
            "INSERT INTO mdl_logstore_standard_log (eventname, component, action, userid, other, timecreated) "
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
            "SELECT '\\\\core\\\\event\\\\course_viewed', 'core', 'viewed', i, REPEAT('x', 200), i FROM n",
            (big_rows,),
        )
    marker = create_user_iomad(connection, make_users(1, start=999_999)[0])[1]
    wait(lambda: ledger_done(server, sidecar.schema)[0] >= 1, 300, "the marker user after the big transaction", 0.1)
    after_rows = sidecar.peak_rss_mb()
    create_users_bulk(connection, make_users(big_users, start=500_000))
    wait(lambda: ledger_done(server, sidecar.schema)[0] >= 1 + big_users, 300, "the big user transaction", 0.1)
    after_users = sidecar.peak_rss_mb()
    sidecar.stop()
    del marker
    return {
        "idle_rss_mb": idle,
        f"peak_rss_mb_after_{big_rows}_unrelated_rows": after_rows,
        f"peak_rss_mb_after_{big_users}_user_transaction": after_users,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="seed,busy,scaling,latency,memory")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    os.environ.update(AWS_ENV)
    standin = AwsStandIn(latency=0.05).start()
    server = MariaDBSandbox(extra_options=("--max-binlog-size=1G",))
    server.start()
    report: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "aws_latency_ms": 50}
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "seed": lambda: seed(server, standin, 200 if args.quick else 2000),
        "busy": lambda: busy(server, standin, 2000 if args.quick else 20_000, 1 if args.quick else 3),
        "scaling": lambda: scaling(server, standin, [100, 1000] if args.quick else [100, 1000, 5000, 20_000]),
        "latency": lambda: latency(server, standin, 20, 5 if args.quick else 30),
        "memory": lambda: memory(server, standin, 20_000 if args.quick else 200_000, 500 if args.quick else 5000),
    }
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / ("pipeline-quick.json" if args.quick else "pipeline.json")
    try:
        for name, scenario in scenarios.items():
            if name in chosen:
                report[name] = scenario()
                # Written after every scenario, so a later failure keeps what was measured.
                output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
                print_table({name: report[name]}, flush=True)
    finally:
        for sidecar in RUNNING:
            sidecar.stop()
        server.remove()
        standin.stop()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


def print_table(report: dict[str, Any], flush: bool = False) -> None:
    _print_table(report)
    if flush:
        sys.stdout.flush()


def _print_table(report: dict[str, Any]) -> None:
    if "seed" in report:
        s = report["seed"]
        print(f"\nseed: {s['users']} users; original plugin's way: {s['baseline_seconds']:.1f} s")
        for name in ("a_one_transaction", "b_iomad_transactions"):
            r = s[name]
            print(f"  {name:<22} {r['seconds']:7.2f} s  {r['speedup_vs_baseline']:6.1f}x  once={r['exactly_once']}")
    if "busy" in report:
        print("\nbusy binlog through the whole pipeline:")
        for name, r in report["busy"].items():
            spread = ", ".join(f"{run['seconds']:.2f}" for run in r["runs"])
            print(
                f"  {name:<12} {r['events']:>8} events {r['seconds']:6.2f} s {r['events_per_s']:>10,.0f} events/s"
                f"  (median of {spread} s)"
            )
            for reader in ("library_default", "library_only_tables_frozen", "mariadb_binlog_v"):
                print(
                    f"      {reader:<28} {r[f'{reader}_events_per_s']:>10,.0f} events/s"
                    f"   pipeline is {r[f'pipeline_vs_{reader}']:.1f}x"
                )
    if "scaling" in report:
        print("\nscaling:")
        for users, r in report["scaling"].items():
            print(
                f"  {users:>6} users {r['seconds']:7.2f} s {r['ms_per_user']:6.2f} ms/user"
                f"  peak memory {r['rss_mb']:.0f} MB"
            )
    if "latency" in report:
        r = report["latency"]
        print(
            f"\nlatency ({r['users']} users): p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms,"
            f" max {r['max_ms']:.0f} ms"
        )
    if "memory" in report:
        print("\nmemory:", ", ".join(f"{k} {v:.0f}" for k, v in report["memory"].items()))


if __name__ == "__main__":
    main()
