"""Alert rules: a YAML file beside the policies, loaded and validated strictly like them.

Three kinds of rule, each with the settings of its condition:

* `violation_rate` (page): a scope's policy violations (ToolRejected + ApprovalRequested) per
  100 runs in the current window rise above `factor` × the rate of the trailing `baseline`.
* `cost_per_success` (warn): the scope's cost of all its runs divided by its successful runs
  rises more than `rise` (0.30 = 30 %) over the previous window.
* `replay_gate` (block): `agentlog gate` failed a candidate; resolved when it passes again.

Durations are seconds or text (`30s`, `5m`, `2h`, `1d`). A file that does not validate is
refused with its line and field named; a running processor keeps its last good rules
(`RulesReloader`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from policies.strict_yaml import StrictLoader

__all__ = ["RulesError", "ViolationRateRule", "CostRiseRule", "GateRule", "Rule", "AlertRules", "KINDS",
           "SCOPES", "parse_rules", "load_rules", "parse_duration", "RulesReloader"]

SCOPES = ("tenant", "route")
"""What a windowed rule groups runs by."""
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


class RulesError(ValueError):
    """A rules file that cannot be loaded; the message names the file, the line and the field."""


@dataclass(frozen=True, kw_only=True)
class ViolationRateRule:
    """Page when the violation rate rises above `factor` × its baseline."""

    name: str
    severity: str = "page"
    scopes: tuple[str, ...] = SCOPES
    """Scopes the rule watches, each separately (every tenant, every route)."""
    window_s: float = 86_400
    """Length of the (tumbling) window the rate is measured in."""
    baseline_s: float = 7 * 86_400
    """How far back the baseline reaches: the windows before the current one."""
    factor: float = 3.0
    """How many times the baseline rate the current rate may reach before it pages."""
    min_runs: int = 20
    """Runs the current window needs before its rate is judged (one denial is not a page)."""
    min_baseline_runs: int = 50
    """Runs the baseline needs before it is trusted."""


@dataclass(frozen=True, kw_only=True)
class CostRiseRule:
    """Warn when cost per successful run rises more than `rise` window over window."""

    name: str
    severity: str = "warn"
    scopes: tuple[str, ...] = SCOPES
    window_s: float = 86_400
    """Length of the window compared with the one before it (a day: day over day)."""
    rise: float = 0.30
    """Largest accepted relative rise (0.30 = +30 %)."""
    min_runs: int = 10
    """Ended runs each of the two windows needs before they are compared."""


@dataclass(frozen=True, kw_only=True)
class GateRule:
    """Block while a candidate's latest gate verdict is a failure."""

    name: str
    severity: str = "block"


Rule = ViolationRateRule | CostRiseRule | GateRule
KINDS: dict[str, type[ViolationRateRule] | type[CostRiseRule] | type[GateRule]] = {
    "violation_rate": ViolationRateRule, "cost_per_success": CostRiseRule, "replay_gate": GateRule}


@dataclass(frozen=True, kw_only=True)
class AlertRules:
    """A loaded, validated rules file."""

    version: str
    """`sha256:` and the first 16 hex digits of the file's hash."""
    rules: tuple[Rule, ...]
    source: str = "<string>"

    def of_kind(self, kind: type[Rule]) -> list[Rule]:
        return [r for r in self.rules if isinstance(r, kind)]


def parse_duration(value: object) -> float:
    """Seconds from a number or a text like `90s`, `5m`, `2h`, `1d`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 30s, 5m, 2h, 1d)")
    if not seconds > 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


def _fields(node: yaml.Node) -> dict[str, yaml.Node]:
    """A mapping node's value nodes by key, for the line of each field."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _number(value: object, *, low: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"must be {'a whole number' if integer else 'a number'}, not {value!r}")
    if value < low:
        raise ValueError(f"must be at least {low:g}, not {value!r}")
    return float(value)


def _rule(raw: Mapping[str, Any], field_lines: Mapping[str, int], *, source: str, line: int) -> Rule:
    at = f"{source}:{line}: rule {raw['name']!r}"
    kind_name = raw.get("kind")
    if kind_name not in KINDS:
        at = f"{source}:{field_lines.get('kind', line)}: rule {raw['name']!r}"
        raise RulesError(f"{at}: field 'kind': must be one of {', '.join(KINDS)}, not {kind_name!r}")
    kind = KINDS[kind_name]
    known = {"name", "kind", *kind.__dataclass_fields__} - {"window_s", "baseline_s", "scopes"}
    known |= {"window", "scopes"} if kind is not GateRule else set()
    known |= {"baseline"} if kind is ViolationRateRule else set()
    args: dict[str, Any] = {"name": raw["name"]}
    for key, value in raw.items():
        where = f"{source}:{field_lines.get(key, line)}: rule {raw['name']!r}: field {key!r}"
        if key not in known:
            raise RulesError(f"{where}: unknown for a {kind_name} rule (known: {', '.join(sorted(known))})")
        try:
            if key in ("name", "kind"):
                continue
            if key == "severity":
                if value not in ("page", "warn", "block"):
                    raise ValueError(f"must be page, warn or block, not {value!r}")
                args[key] = value
            elif key in ("window", "baseline"):
                seconds = parse_duration(value)
                if seconds != int(seconds):
                    # The processor's windows are whole seconds (Faust's tumbling windows are).
                    raise ValueError(f"must be whole seconds, not {value!r}")
                args[f"{key}_s"] = seconds
            elif key == "scopes":
                if (not isinstance(value, list) or not value
                        or any(v not in SCOPES for v in value) or len(set(value)) < len(value)):
                    raise ValueError(f"must be a list of {' and/or '.join(SCOPES)}, not {value!r}")
                args[key] = tuple(value)
            elif key in ("min_runs", "min_baseline_runs"):
                args[key] = int(_number(value, low=1, integer=True))
            elif key == "factor":
                args[key] = float(_number(value, low=1))
            elif key == "rise":
                args[key] = float(_number(value, low=0))
        except ValueError as exc:
            raise RulesError(f"{where}: {exc}") from None
    rule = kind(**args)
    if isinstance(rule, ViolationRateRule) and rule.baseline_s < rule.window_s:
        where = f"{source}:{field_lines.get('baseline', line)}: rule {rule.name!r}: field 'baseline'"
        raise RulesError(f"{where}: must reach back at least one window "
                         f"({rule.baseline_s:g} s < window {rule.window_s:g} s)")
    return rule


def parse_rules(data: bytes | str, *, source: str = "<string>") -> AlertRules:
    """Validate a rules file's text; RulesError names the line and the field of what is wrong."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or node is None:
        raise RulesError(f"{source}: must be a mapping with `version: 1` and `rules:`")
    top = _fields(node)
    unknown = set(doc) - {"version", "rules"}
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise RulesError(f"{source}:{_line(top.get(key))}: field {key!r}: unknown (known: version, rules)")
    if doc.get("version") != 1:
        raise RulesError(f"{source}:{_line(top.get('version'))}: field 'version': must be 1, "
                         f"not {doc.get('version')!r}")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        raise RulesError(f"{source}:{_line(top.get('rules'))}: field 'rules': must be a list of rules")
    items = top["rules"].value if isinstance(top.get("rules"), yaml.SequenceNode) else []
    rules: list[Rule] = []
    for n, (raw, item) in enumerate(zip(raw_rules, items, strict=True), 1):
        at = f"{source}:{_line(item)}: rule {n}"
        if not isinstance(raw, dict):
            raise RulesError(f"{at}: must be a mapping with name and kind")
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", name):
            raise RulesError(f"{at}: field 'name': must be letters, digits, _ . - (up to 80), not {name!r}")
        if any(r.name == name for r in rules):
            raise RulesError(f"{at}: field 'name': {name!r} is used by an earlier rule")
        lines = {k: _line(v) for k, v in _fields(item).items()}
        rules.append(_rule(raw, lines, source=source, line=_line(item)))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return AlertRules(version=f"sha256:{digest}", rules=tuple(rules), source=source)


def load_rules(path: str | PathLike[str]) -> AlertRules:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules ({exc})") from None
    return parse_rules(data, source=str(path))


class RulesReloader:
    """The rules at `path`, re-read when the file changes; an edit that does not validate is
    logged once and the last good rules stay in force. The first load raises RulesError."""

    def __init__(self, path: str | PathLike[str], *, check_every_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, log: logging.Logger | None = None) -> None:
        self.path = Path(path)
        self._check_every_s = check_every_s
        self._clock = clock
        self._log = log or logging.getLogger("agentlog.alerts")
        self.last_error: RulesError | None = None
        self._stamp = self._stat()
        self._rules = load_rules(self.path)
        self._checked_at = clock()

    def current(self) -> AlertRules:
        """The rules in force, after picking up a good edit of the file; never raises."""
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return self._rules
        self._checked_at = now
        stamp = self._stat()
        if stamp == self._stamp:
            return self._rules
        self._stamp = stamp
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.last_error = exc
            self._log.warning("alert rules reload refused, keeping version %s: %s", self._rules.version, exc)
            return self._rules
        except Exception as exc:  # noqa: BLE001 - a reload must never take the processor down
            self.last_error = RulesError(f"{self.path}: reload failed ({type(exc).__name__}: {exc})")
            self._log.warning("alert rules reload refused: %s", self.last_error)
            return self._rules
        self.last_error = None
        self._log.info("alert rules %s reloaded: version %s -> %s", self.path, self._rules.version,
                       rules.version)
        self._rules = rules
        return rules

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino
