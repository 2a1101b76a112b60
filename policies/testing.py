"""Reviewers' tools: one call in, one decision out; and policy unit tests written as YAML cases.

A call is `{"tool": …, "input": {…}}` with optional `run_metrics`, `tenant_id` and `route`.
A call that is not well formed is denied with the reason, like any other call the guard
cannot check, so a batch of calls always yields one decision per call.

A case file, `NAME.cases.yaml`, names the policy it tests (relative to the case file) and
lists calls with the decision each must get:

    policy: ../default.yaml
    cases:
      - name: dropping a table is denied
        call: {tool: query_sql, input: {sql: "DROP TABLE orders"}}
        run_metrics: {tickets_created: 3}      # optional; unset counters are 0 (a fresh run)
        tenant_id: acme                        # optional
        route: support                         # optional
        expect: {action: deny, rule: deny_destructive_sql, reason_contains: DROP}

`expect.rule` is checked when present (`null` means "no rule decided"); `reason_contains`
when present. A rule is exercised when it is the deciding rule of some case.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, get_args

import yaml

from policies.engine import (  # the engine's strict loader: a duplicated key is an error here too
    METRICS,
    Action,
    Decision,
    Policy,
    PolicyError,
    ToolCatalog,
    load_policy,
)
from policies.strict_yaml import load_strict

__all__ = [
    "CASE_SUFFIXES", "FRESH_RUN", "CaseResult", "Call", "SuiteReport", "parse_call", "parse_metrics",
    "run_suite",
]

CASE_SUFFIXES = (".cases.yaml", ".cases.yml")
FRESH_RUN: Mapping[str, float] = dict.fromkeys(METRICS, 0)
"""The counters of a run that has done nothing yet: what a call without run_metrics is about."""

_CALL_KEYS = {"tool", "input", "run_metrics", "tenant_id", "route"}
_CASE_KEYS = {"name", "call", "run_metrics", "tenant_id", "route", "expect", "description"}
_EXPECT_KEYS = {"action", "rule", "reason_contains"}
_FILE_KEYS = {"policy", "cases", "description"}


@dataclass(frozen=True)
class Call:
    """A proposed tool call, as a reviewer writes it."""

    tool: str
    input: Mapping[str, Any]
    run_metrics: Mapping[str, float]
    tenant_id: str = ""
    route: str = ""


def parse_metrics(value: object, *, base: Mapping[str, float] = FRESH_RUN) -> dict[str, float]:
    """`value` laid over `base`; refuses unknown counters and non-numbers (ValueError)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"run_metrics must be an object, got {_show(value)}")
    unknown = sorted(str(k) for k in value if k not in METRICS)
    if unknown:
        raise ValueError(f"unknown run_metrics {unknown} (use {', '.join(METRICS)})")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"run_metrics.{k} must be a number, got {_show(v)}")
    return {**base, **value}


def parse_call(value: object, *, run_metrics: Mapping[str, float] = FRESH_RUN) -> Call:
    """A call from decoded JSON or YAML; ValueError says what is wrong with it.

    `run_metrics` are the counters to use where the call gives none of its own.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"a call is an object with 'tool' and 'input', got {_show(value)}")
    if unknown := sorted(str(k) for k in set(value) - _CALL_KEYS):
        raise ValueError(f"unknown keys {unknown} (use {', '.join(sorted(_CALL_KEYS))})")
    if "tool" not in value:
        raise ValueError("'tool' is missing")
    tool = value["tool"]
    if not isinstance(tool, str) or not tool:
        raise ValueError(f"'tool' must be a non-empty string, got {_show(tool)}")
    if "input" not in value:
        raise ValueError("'input' is missing")
    if not isinstance(value["input"], Mapping):
        raise ValueError(f"'input' must be an object, got {_show(value['input'])}")
    metrics = parse_metrics(value.get("run_metrics", {}), base=run_metrics)
    scope = {k: value.get(k, "") for k in ("tenant_id", "route")}
    for k, v in scope.items():
        if not isinstance(v, str):
            raise ValueError(f"'{k}' must be a string, got {_show(v)}")
    return Call(tool, value["input"], metrics, scope["tenant_id"], scope["route"])


# ---- case files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """One case, or one case file that could not be run at all (then `name` is empty)."""

    file: str
    name: str
    passed: bool
    problem: str = ""
    """Why it failed: the expectation and what came instead, or what is wrong with the case."""
    decision: Decision | None = None


@dataclass
class SuiteReport:
    """Every case's result, and the rules of each tested policy that no case exercised."""

    results: list[CaseResult] = field(default_factory=list)
    unexercised: dict[str, list[str]] = field(default_factory=dict)
    """Policy source -> names of its rules that decided no case, in file order."""

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> list[CaseResult]:
        return [r for r in self.results if r.passed]

    @property
    def unexercised_count(self) -> int:
        return sum(len(names) for names in self.unexercised.values())


def run_suite(target: str | PathLike[str], *, registry: ToolCatalog | None) -> SuiteReport:
    """Run every case file in directory `target` (recursively), or the one file `target`."""
    root = Path(target)
    report = SuiteReport()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.name.endswith(CASE_SUFFIXES) and p.is_file())
        if not files:
            report.results.append(CaseResult(str(root), "", False, "no *.cases.yaml file here"))
    elif root.is_file():
        files = [root]
    else:
        files = []
        report.results.append(CaseResult(str(root), "", False, "no such file or directory"))
    policies: dict[Path, Policy] = {}
    exercised: dict[Path, set[str]] = {}
    for path in files:
        _run_file(path, registry, policies, exercised, report)
    for key, policy in policies.items():
        report.unexercised[policy.source] = [
            r.name for r in policy.rules if r.name not in exercised.get(key, set())]
    return report


def _run_file(path: Path, registry: ToolCatalog | None, policies: dict[Path, Policy],
              exercised: dict[Path, set[str]], report: SuiteReport) -> None:
    shown = str(path)
    try:
        doc, named = _read_case_file(path)
        policy_path = named.resolve()  # one policy named two ways is still one policy
        if policy_path not in policies:
            policies[policy_path] = load_policy(named, registry=registry)
    except (PolicyError, ValueError) as exc:
        report.results.append(CaseResult(shown, "", False, str(exc)))
        return
    policy = policies[policy_path]
    seen: set[str] = set()
    for i, raw in enumerate(doc["cases"]):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) and name else f"cases[{i}]"
        if label in seen:
            report.results.append(CaseResult(shown, label, False, "duplicate case name"))
            continue
        seen.add(label)
        try:
            call, expect = _parse_case(raw)
        except ValueError as exc:
            report.results.append(CaseResult(shown, label, False, f"bad case: {exc}"))
            continue
        decision = policy.evaluate(tool=call.tool, input=call.input, run_metrics=call.run_metrics,
                                   tenant_id=call.tenant_id, route=call.route)
        if decision.rule is not None:
            exercised.setdefault(policy_path, set()).add(decision.rule)
        problem = _mismatch(expect, decision)
        report.results.append(CaseResult(shown, label, not problem, problem, decision))


def _read_case_file(path: Path) -> tuple[dict[str, Any], Path]:
    try:
        doc = load_strict(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the case file: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("a case file is a mapping with 'policy' and 'cases'")
    if unknown := sorted(str(k) for k in set(doc) - _FILE_KEYS):
        raise ValueError(f"unknown top-level keys {unknown} (use {', '.join(sorted(_FILE_KEYS))})")
    policy = doc.get("policy")
    if not isinstance(policy, str) or not policy:
        raise ValueError("'policy' must name the policy file, relative to the case file")
    if not isinstance(doc.get("cases"), list) or not doc["cases"]:
        raise ValueError("'cases' must be a non-empty list")
    return doc, Path(os.path.normpath(path.parent / policy))


def _parse_case(raw: object) -> tuple[Call, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ValueError(f"a case is a mapping with name, call and expect, got {_show(raw)}")
    if unknown := sorted(str(k) for k in set(raw) - _CASE_KEYS):
        raise ValueError(f"unknown keys {unknown} (use {', '.join(sorted(_CASE_KEYS))})")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ValueError("'name' must be a non-empty string")
    call_doc = raw.get("call")
    if not isinstance(call_doc, dict) or set(call_doc) - {"tool", "input"}:
        raise ValueError("'call' must be a mapping of tool and input only "
                         "(run_metrics, tenant_id and route go beside it)")
    scope = {k: raw[k] for k in ("run_metrics", "tenant_id", "route") if k in raw}
    call = parse_call({**call_doc, **scope})
    expect = raw.get("expect")
    if not isinstance(expect, dict) or "action" not in expect:
        raise ValueError("'expect' must be a mapping with at least 'action'")
    if unknown := sorted(str(k) for k in set(expect) - _EXPECT_KEYS):
        raise ValueError(f"unknown expect keys {unknown} (use {', '.join(sorted(_EXPECT_KEYS))})")
    if expect["action"] not in get_args(Action):
        raise ValueError(f"unknown expected action {expect['action']!r} "
                         f"(use {', '.join(get_args(Action))})")
    if "rule" in expect and expect["rule"] is not None and not isinstance(expect["rule"], str):
        raise ValueError(f"expect.rule must be a rule name or null, got {_show(expect['rule'])}")
    if "reason_contains" in expect and not isinstance(expect["reason_contains"], str):
        raise ValueError("expect.reason_contains must be a string")
    return call, expect


def _mismatch(expect: Mapping[str, Any], decision: Decision) -> str:
    wanted = [f"action {expect['action']}"]
    ok = decision.action == expect["action"]
    if "rule" in expect:
        wanted.append(f"rule {expect['rule'] or 'none'}")
        ok = ok and decision.rule == expect["rule"]
    if "reason_contains" in expect:
        wanted.append(f"a reason containing {expect['reason_contains']!r}")
        ok = ok and expect["reason_contains"] in decision.reason
    if ok:
        return ""
    return (f"expected {', '.join(wanted)}; got action {decision.action}, "
            f"rule {decision.rule or 'none'}: {decision.reason}")


def _show(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
