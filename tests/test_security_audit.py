"""The runtime dependencies are locked (exact versions, with hashes) and audited for known
vulnerabilities with pip-audit.

requirements.lock is made with

    pip-compile --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \\
        --annotation-style=line --output-file=requirements.lock pyproject.toml

and installs with `pip install --require-hashes -r requirements.lock` (it matches a `pip freeze` of
a clean virtual environment with `pip install .`). Regenerate it when pyproject.toml's
dependencies change; the first test below fails until then.

pip-audit asks PyPI's per-release JSON (`/pypi/NAME/VERSION/json`) for advisories. Where that
answers "not found" for every package (some mirrors serve only the project JSON) the project
JSON's `vulnerabilities`, which describe its latest release, are used for pins that ARE the latest
release; anything still not audited makes the test skip, naming it and why."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"

# Advisories accepted after review: {"ID": "why it does not apply"}. Empty: nothing is accepted.
ACCEPTED: dict[str, str] = {}

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def locked() -> dict[str, tuple[str, int]]:
    """Canonical name → (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
            pins[current] = (match["version"], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but not in requirements.lock: regenerate it"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: regenerate it"
        )
    assert all(hashes > 0 for _, hashes in pins.values()), "every pin carries its hashes"
    assert "cdc-offload" not in pins, "the project itself is not in its own lock"


def _pip_audit() -> list[str]:
    found = shutil.which("pip-audit")
    if found is None:
        pytest.skip("pip-audit is not installed (pip install pip-audit; it is in the dev extras' intent)")
    return [found]


def _latest_release_advisories(name: str, version: str) -> list[str] | None:
    """Advisory ids from PyPI's project JSON when `version` is its latest release; None when it
    cannot say (an older pin, or PyPI unreachable)."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as response:
            project = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if project.get("info", {}).get("version") != version or "vulnerabilities" not in project:
        return None
    return [str(v.get("id")) for v in project["vulnerabilities"] if not v.get("withdrawn")]


@pytest.mark.slow
def test_pip_audit_finds_no_known_vulnerability_in_the_locked_dependencies() -> None:
    command = [*_pip_audit(), "-r", str(LOCK), "--disable-pip", "--format", "json", "--progress-spinner", "off"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("pip-audit's vulnerability service did not answer within 180 s")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if "ConnectionError" in result.stderr or "NameResolution" in result.stderr or "Timeout" in result.stderr:
            pytest.skip(f"pip-audit's vulnerability service is unreachable: {last[:300]}")
        raise AssertionError(f"pip-audit failed (exit {result.returncode}): {last[:500]}") from None

    pins = locked()
    vulnerable: dict[str, list[str]] = {}
    not_audited: dict[str, tuple[str, str]] = {}
    for dependency in report["dependencies"]:
        name = dependency["name"]
        version = dependency.get("version") or pins.get(canonicalize_name(name), ("?", 0))[0]
        if dependency.get("skip_reason"):
            not_audited[name] = (version, dependency["skip_reason"])
            continue
        ids = [v["id"] for v in dependency.get("vulns", []) if v["id"] not in ACCEPTED]
        if ids:
            vulnerable[f"{name}=={version}"] = ids

    for name, (version, _) in list(not_audited.items()):
        advisories = _latest_release_advisories(name, version)
        if advisories is not None:
            del not_audited[name]
            if [a for a in advisories if a not in ACCEPTED]:
                vulnerable[f"{name}=={version}"] = advisories

    assert {canonicalize_name(d["name"]) for d in report["dependencies"]} == set(pins), "pip-audit saw every pin"
    assert not vulnerable, f"known vulnerabilities in locked dependencies: {vulnerable}"
    if not_audited:
        reasons = "; ".join(f"{n}=={v}: {why}" for n, (v, why) in sorted(not_audited.items()))
        audited = len(pins) - len(not_audited)
        pytest.skip(
            f"{audited} of {len(pins)} locked dependencies audited, no known vulnerability; "
            f"not audited: {reasons[:600]}"
        )
