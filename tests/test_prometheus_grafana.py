"""The dashboard and the alert rules against a real Prometheus scraping real sidecars.

Two `cdc-offload run` processes (configured only through CDC_OFFLOAD_* environment variables and
password files, as the container and the Kubernetes manifests configure them) work on the session's
throwaway MariaDB and moto's SQS; Debian's `prometheus` binary scrapes both every second with
deploy/prometheus/alerts.yml loaded. Every PromQL expression of the Grafana dashboard and of the
rules is then evaluated through Prometheus' HTTP API, the dashboard's MySQL ledger query runs
against the state schema the run wrote, and the Dockerfile's HEALTHCHECK and the manifests' probe
paths are asked of the live sidecars. Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pymysql
import pytest
import yaml

from cdc_offload.demo.moodle import create_user_iomad, make_users
from cdc_offload.demo.stack import MoodleDatabase, moodle_database
from cdc_offload.sandbox import free_port
from tests.support import ledger, wait_for
from tests.test_deploy_artifacts import (
    ALERTS,
    dashboard_panels,
    dashboard_promql,
    healthcheck_argv,
    kube_documents,
    pod_containers,
)

pytestmark = pytest.mark.slow

USERS = 12
DATABASE = "moodle_observed"
STATE_SCHEMA = f"cdc_{DATABASE}"
GRAFANA_READER = "grafana_ledger_obs"
GRAFANA_READER_PASSWORD = "grafana-ledger-test-only"  # a throwaway account of this test
USER_PASSWORD = "Obs#Canary-7f3Qz9!"  # the temporary password in every outbox body of the run
# Panels that must show data after a run, not only parse: the brief's throughput and lag, and more.
MUST_HAVE_DATA = (
    "Binlog events/s / A",
    "Replication lag / A",
    "Active instances / A",
    "Offloaded to AWS / A",
    "AWS dispatch latency / B",
    "Checkpoint age / A",
)


# -- processes ---------------------------------------------------------------------------------
def cdc_offload_command() -> list[str]:
    """The console script the image's ENTRYPOINT runs, from this interpreter's environment."""
    script = Path(sys.executable).parent / "cdc-offload"
    if script.exists():
        return [str(script)]
    found = shutil.which("cdc-offload")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from cdc_offload.cli import main; sys.exit(main())"]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except OSError:
        return 0, b""


@dataclass
class SidecarProcess:
    """`cdc-offload run` as the container runs it: a subprocess configured by its environment."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SidecarProcess:
        env = {**os.environ, **self.env, "CDC_OFFLOAD_METRICS_PORT": str(self.port)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*cdc_offload_command(), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def gauge(self, name: str) -> float | None:
        status, body = http_get(self.url("/metrics"))
        if status != 200:
            return None
        match = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
        return float(match.group(1)) if match else None

    def wait_ready(self, role: str, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.running(), f"{self.name} exited:\n{self.log.read_text()[-3000:]}"
            status, body = http_get(self.url("/readyz"))
            return status == 200 and json.loads(body).get("role") == role

        wait_for(ready, timeout, f"{self.name} to be ready as {role}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as the kubelet or `docker stop` sends it; the drain must fit the grace period."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Prometheus:
    """Debian's prometheus binary on its own port and storage, scraping every second."""

    root: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            message = "Debian's `prometheus` is not installed here (apt-get install prometheus)"
            if os.environ.get("CI"):
                pytest.fail(message + ": CI must install it")
            pytest.skip(message)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": "cdc-offload", "metrics_path": "/metrics", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (self.root / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            return http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200

        wait_for(ready, 30, "prometheus to be ready")
        return self

    def log_tail(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        answer = json.loads(body) if body else {"status": f"http {status}"}
        return dict(answer)

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def values(self, expr: str) -> list[float]:
        answer = self.query(expr)
        assert answer["status"] == "success", answer
        return [float(r["value"][1]) for r in answer["data"]["result"]]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Run:
    moodle: MoodleDatabase
    prometheus: Prometheus
    active: SidecarProcess
    standby: SidecarProcess
    created: list[tuple[int, int]]
    started_at: float


def sidecar_env(moodle: MoodleDatabase, queue_url: str, secrets: Path, server_id: int) -> dict[str, str]:
    (secrets / "source-password").write_text(moodle.reader.password + "\n")
    (secrets / "writer-password").write_text(moodle.writer.password + "\n")
    return {
        "CDC_OFFLOAD_SOURCE_DSN": moodle.server.url(moodle.reader.user, database=moodle.database),
        "CDC_OFFLOAD_SOURCE_PASSWORD_FILE": str(secrets / "source-password"),
        "CDC_OFFLOAD_WRITER_DSN": moodle.server.url(moodle.writer.user, database=moodle.database),
        "CDC_OFFLOAD_WRITER_PASSWORD_FILE": str(secrets / "writer-password"),
        "CDC_OFFLOAD_STATE_SCHEMA": STATE_SCHEMA,
        "CDC_OFFLOAD_SINK": "sqs",
        "CDC_OFFLOAD_QUEUE_URL": queue_url,
        "CDC_OFFLOAD_SERVER_ID": str(server_id),
        "CDC_OFFLOAD_METRICS_HOST": "127.0.0.1",
        "CDC_OFFLOAD_HEARTBEAT": "0.5",
        "CDC_OFFLOAD_READ_TIMEOUT": "3",
        "CDC_OFFLOAD_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def run(db_server: Any, aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("observed")
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    moodle = moodle_database(db_server, database=DATABASE)
    queue_url = str(
        boto3.client("sqs").create_queue(QueueName="observed-emails.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    )
    env = sidecar_env(moodle, queue_url, secrets, 4_242_301)
    init_env = {k: v for k, v in env.items() if k.startswith(("CDC_OFFLOAD_WRITER", "CDC_OFFLOAD_STATE"))}
    initialised = subprocess.run(
        [*cdc_offload_command(), "init"], env={**os.environ, **init_env}, capture_output=True, text=True, check=False
    )
    assert initialised.returncode == 0, initialised.stdout + initialised.stderr

    active = SidecarProcess("sidecar-a", env, root / "sidecar-a.log").start()
    standby: SidecarProcess | None = None
    prometheus: Prometheus | None = None
    try:
        active.wait_ready("active")
        standby = SidecarProcess(
            "sidecar-b", {**env, "CDC_OFFLOAD_SERVER_ID": "4242302"}, root / "sidecar-b.log"
        ).start()
        standby.wait_ready("standby")
        (root / "prometheus").mkdir()
        prom = Prometheus(root / "prometheus", [f"127.0.0.1:{active.port}", f"127.0.0.1:{standby.port}"])
        prometheus = prom
        prom.start()
        started_at = time.time()
        # Both targets up before the traffic, so the counters' rise is in the scraped series.
        wait_for(lambda: prom.values("sum(up)") == [2.0], 30, "prometheus to scrape both sidecars")

        admin = moodle.admin()
        created = [create_user_iomad(admin, user) for user in make_users(USERS, start=70_000, password=USER_PASSWORD)]
        admin.close()
        wait_for(lambda: len(ledger(moodle, STATE_SCHEMA)) >= USERS, 60, f"{USERS} ledger rows")
        wait_for(
            lambda: prom.values('sum(cdc_offload_jobs_total{status="offloaded"})') == [float(USERS)],
            30,
            "prometheus to scrape the offloaded count",
        )
        # rate() over the run's events needs two samples after them.
        wait_for(
            lambda: any(v > 0 for v in prom.values("sum(rate(cdc_offload_binlog_events_total[1m]))")),
            30,
            "a non-zero binlog event rate",
        )
        yield Run(moodle, prom, active, standby, created, started_at)
    finally:
        for process in (active, standby):
            if process is not None:
                process.kill()
        if prometheus is not None:
            prometheus.stop()


# -- the dashboard's PromQL ----------------------------------------------------------------------
def test_every_dashboard_query_succeeds_and_throughput_and_lag_have_data(run: Run) -> None:
    queries = dashboard_promql()
    assert queries
    empty = []
    now = time.time()
    for name, expr in queries.items():
        if name.startswith("variable "):
            # label_values() is Grafana's: the API behind it is /api/v1/label/<name>/values.
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr).groups()  # type: ignore[union-attr]
            answer = run.prometheus.api(f"label/{label}/values", **{"match[]": metric})
            assert answer["status"] == "success", (name, answer)
            assert len(answer["data"]) == 2, "both sidecars offer themselves as an instance"
            continue
        instant = run.prometheus.query(expr)
        assert instant["status"] == "success", f"{name}: {expr}\n{instant}"
        ranged = run.prometheus.api("query_range", query=expr, start=str(run.started_at), end=str(now), step="1")
        assert ranged["status"] == "success", f"{name} (range): {expr}\n{ranged}"
        if not instant["data"]["result"]:
            empty.append(name)
    missing = [name for name in MUST_HAVE_DATA if name in empty]
    assert not missing, f"no data in {missing}"
    for name in MUST_HAVE_DATA:
        assert name in queries, f"the dashboard has no query {name!r}"


def test_the_numbers_the_dashboard_shows_match_the_run(run: Run) -> None:
    queries = dashboard_promql()

    def value(name: str) -> float:
        (number,) = run.prometheus.values(queries[name])
        return number

    assert value("Active instances / A") == 1, "one active, one standing by"
    assert value("Offloaded to AWS / A") >= USERS * 0.9, "increase() extrapolates; the run offloaded all"
    assert value("Duplicates counted / A") == 0
    assert value("AWS circuit breaker / A") == 0
    assert value("Fail-closed / A") == 0
    assert 0 <= value("Replication lag / A") < 45
    events_per_second = sum(run.prometheus.values(queries["Binlog events/s / A"]))
    assert events_per_second > 0
    assert value("Checkpoint age / A") < 60
    # One series per sink: the unused SES sink has no observations (NaN), SQS has this run's.
    p95 = [v for v in run.prometheus.values(queries["AWS dispatch latency / B"]) if not math.isnan(v)]
    assert p95 and all(0 < v <= 30 for v in p95)
    states = run.prometheus.values(queries["Active instance / A"])
    assert sorted(states) == [0.0, 1.0]


# -- the alert rules -----------------------------------------------------------------------------
def test_alert_rules_are_loaded_evaluate_cleanly_and_none_fires_on_a_healthy_run(run: Run) -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        answer = run.prometheus.query(rule["expr"])
        assert answer["status"] == "success", f"{rule['alert']}: {answer}"

    def evaluated() -> list[dict[str, Any]] | None:
        loaded = [r for g in run.prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
        return loaded if loaded and all(r.get("lastEvaluation", "").startswith("2") for r in loaded) else None

    loaded = wait_for(evaluated, 15, "prometheus to evaluate every rule")
    assert {r["name"] for r in loaded} == {r["alert"] for r in rules}
    for rule in loaded:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    active_alerts = run.prometheus.api("alerts")["data"]["alerts"]
    assert active_alerts == [], f"a healthy run raises nothing: {active_alerts}"


# -- the ledger table over MySQL -----------------------------------------------------------------
def grafana_sqlstring(value: str) -> str:
    """Grafana's `${var:sqlstring}` format: quote, doubling single quotes."""
    return "'" + value.replace("'", "''") + "'"


def ledger_sql(userid: str, start: float, end: float) -> str:
    (panel,) = [p for p in dashboard_panels() if p["title"] == "Email Offload"]
    sql = str(panel["targets"][0]["rawSql"])
    sql = sql.replace("${userid:sqlstring}", grafana_sqlstring(userid))
    # Grafana's MySQL macro, as its documentation spells the expansion.
    return re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        lambda m: f"{m.group(1)} BETWEEN FROM_UNIXTIME({int(start)}) AND FROM_UNIXTIME({int(end) + 1})",
        sql,
    )


@pytest.fixture(scope="module")
def grafana_reader(run: Run) -> Iterator[Any]:
    """The datasource's account: SELECT on the state schema only, like deploy/compose's."""
    admin = run.moodle.server.connect()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER IF NOT EXISTS '{GRAFANA_READER}'@'%' IDENTIFIED BY '{GRAFANA_READER_PASSWORD}'")
        cursor.execute(f"GRANT SELECT ON `{STATE_SCHEMA}`.* TO '{GRAFANA_READER}'@'%'")
    connection = pymysql.connect(
        host=run.moodle.server.host,
        port=run.moodle.server.port,
        user=GRAFANA_READER,
        password=GRAFANA_READER_PASSWORD,
        database=STATE_SCHEMA,
        charset="utf8mb4",
        autocommit=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")  # the datasource's session time zone
    try:
        yield connection
    finally:
        connection.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{GRAFANA_READER}'@'%'")
        admin.close()


def query(connection: Any, sql: str) -> list[dict[str, Any]]:
    with connection.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def test_email_offload_table_lists_the_runs_ledger_newest_first(run: Run, grafana_reader: Any) -> None:
    rows = query(grafana_reader, ledger_sql("", run.started_at - 120, time.time() + 60))
    expected = {outbox_id: userid for userid, outbox_id in run.created}
    assert {r["Outbox id"]: r["User id"] for r in rows} == expected
    assert {r["Status"] for r in rows} == {"offloaded"}
    assert all(r["AWS message id"] and r["Sink"] == "sqs" for r in rows)
    order = [(r["Handled (UTC)"], r["Outbox id"]) for r in rows]
    assert order == sorted(order, reverse=True), "newest first"
    # The dashboard's time range: rows handled before it are not listed.
    assert query(grafana_reader, ledger_sql("", run.started_at - 7200, run.started_at - 3600)) == []


def test_email_offload_table_filtered_by_user_id_at_any_date(run: Run, grafana_reader: Any) -> None:
    userid, outbox_id = run.created[USERS // 2]
    long_ago = run.started_at - 30 * 86400
    rows = query(grafana_reader, ledger_sql(str(userid), long_ago, long_ago + 3600))
    assert [(r["User id"], r["Outbox id"], r["Status"]) for r in rows] == [(userid, outbox_id, "offloaded")]
    assert query(grafana_reader, ledger_sql(f" {userid} ", long_ago, time.time())) == rows, "pasted with spaces"
    assert query(grafana_reader, ledger_sql("999999999", long_ago, time.time())) == []
    # Exact ids only: MySQL alone would read '7abc' as 7.
    assert query(grafana_reader, ledger_sql(f"{userid}abc", long_ago, time.time())) == []
    assert query(grafana_reader, ledger_sql(f"{userid}' OR '1'='1", long_ago, time.time())) == []


def test_a_crafted_user_id_cannot_read_beyond_the_ledger(run: Run, grafana_reader: Any) -> None:
    """Grafana's sqlstring doubles quotes but leaves backslashes, which MySQL's default sql_mode
    reads as escapes; the datasource account is the containment. Whatever the textbox holds, the
    query it builds fails or lists ledger rows only, and the account cannot read Moodle's tables
    (where the addresses and the passwords are)."""
    (panel,) = [p for p in dashboard_panels() if p["title"] == "Email Offload"]
    width = str(panel["targets"][0]["rawSql"]).count(" AS `")  # a UNION needs the table's column count
    crafted = f"\\' UNION SELECT body{', 1' * (width - 1)} FROM `{DATABASE}`.`mdl_email` -- "
    try:
        rows = query(grafana_reader, ledger_sql(crafted, run.started_at - 120, time.time()))
    except pymysql.err.MySQLError:
        rows = []
    assert not any("password" in str(value) for row in rows for value in row.values()), "no mail content leaks"
    assert {row["Outbox id"] for row in rows} <= {outbox_id for _, outbox_id in run.created}
    for table in ("mdl_email", "mdl_user"):
        with pytest.raises(pymysql.err.MySQLError) as refused:
            query(grafana_reader, f"SELECT * FROM `{DATABASE}`.`{table}` LIMIT 1")
        assert refused.value.args[0] == 1142, refused.value  # SELECT command denied


# -- the image's health check and the manifests' probes, asked of the live sidecars -------------
def test_healthcheck_and_probe_paths_answer_on_the_live_sidecars(run: Run) -> None:
    argv = healthcheck_argv()
    for sidecar in (run.active, run.standby):
        env = {**os.environ, "CDC_OFFLOAD_METRICS_PORT": str(sidecar.port)}
        result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
        assert result.returncode == 0, f"{sidecar.name}: {result.stderr!r}"
    paths = {
        container[probe]["httpGet"]["path"]
        for _, document in kube_documents()
        for container in pod_containers(document)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        if probe in container
    }
    for sidecar in (run.active, run.standby):
        for path in sorted(paths):
            assert http_get(sidecar.url(path))[0] == 200, f"{sidecar.name} {path}"
    userid, outbox_id = run.created[0]
    status, body = http_get(run.active.url(f"/ledger/users/{userid}"))
    assert status == 200 and json.loads(body)["rows"][0]["outbox_id"] == outbox_id


# -- last: SIGTERM, failover, and the absent() alert ---------------------------------------------
def test_sigterm_drains_the_standby_takes_over_and_absent_alerts_when_both_are_gone(run: Run) -> None:
    started = time.monotonic()
    assert run.active.terminate(timeout=40) == 0, run.active.log.read_text()[-3000:]
    assert time.monotonic() - started < 30, "the drain fits the 45 s grace period with room to spare"
    run.standby.wait_ready("active", timeout=30)
    wait_for(
        lambda: run.prometheus.values("sum(cdc_offload_active)") == [1.0] and run.prometheus.values("sum(up)") == [1.0],
        30,
        "prometheus to see the standby active and the old leader gone",
    )
    assert run.standby.terminate(timeout=40) == 0, run.standby.log.read_text()[-3000:]

    def absent_alert() -> bool:
        alerts = run.prometheus.api("alerts")["data"]["alerts"]
        return any(a["labels"]["alertname"] == "CdcOffloadAbsent" for a in alerts)

    wait_for(absent_alert, 30, "CdcOffloadAbsent to be pending once no instance is scraped")


def test_the_sidecars_logs_carry_no_secret(run: Run) -> None:
    """What `docker logs` / `kubectl logs` show: no password of any kind, ever."""
    secrets = {USER_PASSWORD, run.moodle.reader.password, run.moodle.writer.password}
    for sidecar in (run.active, run.standby):
        text = sidecar.log.read_text()
        assert "outbox_row_resolved" in text or sidecar is run.standby, f"{sidecar.name} logged no outcome"
        for secret in secrets:
            assert secret not in text, f"{sidecar.name} logged a secret"


def test_the_sidecars_stdout_is_json_lines_only(run: Run) -> None:
    for sidecar in (run.active, run.standby):
        for line in sidecar.log.read_text().splitlines():
            if line.strip():
                assert isinstance(json.loads(line), dict), f"{sidecar.name}: {line[:200]}"
