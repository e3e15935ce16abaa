"""One line of `cdc-offload check`: what was checked, and the problem and fix when it failed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    problem: str = ""
    fix: str = ""
    # ok, but worth a look (printed as WARN): a looser setting than needed, a link without TLS, ...
    warning: bool = False
