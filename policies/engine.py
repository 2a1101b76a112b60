"""Policy-as-code: YAML rules that allow, deny or park a proposed tool call.

A policy is loaded once, validated strictly (a typo must fail the load, not silently never
match) and identified by a hash of its bytes, which every decision carries so replay can tell
which rules decided. Evaluation is pure: the call, the run's counters and the caller's tenant
and route are all it sees.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses
from functools import cached_property, lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args

import sqlglot
import yaml
from sqlglot import exp

from policies.strict_yaml import load_strict

__all__ = [
    "METRICS", "TOOL_USAGE_METRICS", "Action", "Decision", "Policy", "PolicyError", "Rule", "ToolCatalog",
    "ToolContract", "load_policy", "parse_policy",
]

Action = Literal["allow", "deny", "require_human_approval"]
_RANK: dict[str, int] = {"allow": 0, "require_human_approval": 1, "deny": 2}
METRICS = ("tickets_created", "emails_sent", "tool_calls", "cost_usd", "tool_run_calls", "tool_tenant_calls")
# The last two count calls of the proposed tool itself (in this run; by this tenant today): the
# guard supplies them for tools with call budgets and for policies that name them.
TOOL_USAGE_METRICS = ("tool_run_calls", "tool_tenant_calls")
# The counter each tool bumps when it runs; mirrors how the orchestrator folds RunMetrics.
_COUNTED_BY_TOOL = {"create_ticket": "tickets_created", "send_email": "emails_sent"}
_COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "gt": (operator.gt, ">"), "gte": (operator.ge, ">="), "lt": (operator.lt, "<"),
    "lte": (operator.le, "<="), "eq": (operator.eq, "=="),
}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_READ_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
_WRITE_NODES = (exp.DML, exp.DDL, exp.Command)
# Functions that make a SELECT more than a read, by lowercase name (SQLite matches names without
# regard to case), with what each does, for the decision's reason. SQLite's extensions and shell
# first; then other engines' file and network functions, which sqlglot's sqlite dialect parses
# as calls too, so the rule stays right if the backend changes.
_UNSAFE_FUNCTIONS: dict[str, str] = {
    "load_extension": "loads code",
    "fts3_tokenizer": "loads code",  # registers a tokenizer from a raw C pointer
    "writefile": "writes a file",
    "edit": "runs an editor",
    **dict.fromkeys(["eval", "sha3_query", "sha1_query"], "runs SQL given as text"),
    **dict.fromkeys(["readfile", "fsdir", "zipfile"], "reads a file on the server"),
    **dict.fromkeys(
        ["pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import",
         "load_file", "read_csv", "read_parquet", "file"],
        "reads a file on the server"),
    "lo_export": "writes a file",
    "executable": "runs a program",
    **dict.fromkeys(["url", "s3", "hdfs", "remote", "remotesecure", "dblink", "dblink_exec"],
                    "reaches another server"),
}

Verdict = tuple[bool | None, str]
"""(matched, what matched); None means the condition could not be checked."""
Recipient = tuple[str, str | None]
"""(address, domain); domain None when it cannot be trusted."""


class PolicyError(ValueError):
    """A policy file that cannot be loaded; the message names the file, the rule and why."""


class ToolContract(Protocol):
    """What the engine needs of a registered tool (processors' ToolSpec fits)."""

    @property
    def cost_usd(self) -> float: ...

    def input_errors(self, value: object) -> list[str]: ...


class ToolCatalog(Protocol):
    """What the engine needs of a tool registry (processors' ToolRegistry fits)."""

    def get(self, name: str) -> ToolContract | None: ...


@dataclass(frozen=True)
class Decision:
    """The guard's answer to one proposed call."""

    action: Action
    """What happens to the call."""
    rule: str | None
    """The deciding rule; None for the default and for fail-closed denials."""
    reason: str
    """Why, in words a reviewer reads: the rule and what matched."""
    policy_version: str
    """Content hash of the policy that decided."""


@dataclass(frozen=True)
class _Call:
    tool: str
    input: Mapping[str, Any]
    metrics: Mapping[str, float | None]
    tenant: str
    route: str

    @cached_property
    def recipients(self) -> list[Recipient] | None:
        """The call's recipients, parsed once however many rules look at them."""
        return _recipients(self.input)


ConditionTest = Callable[[_Call], Verdict]


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One validated rule of a policy."""

    name: str
    """Unique name, quoted in every decision it makes."""
    action: Action
    """What a match asks for."""
    tools: frozenset[str] | None = None
    """Tool names the rule is about; None for every tool."""
    tool_prefixes: tuple[str, ...] | None = None
    """Name prefixes the tool must have (`mcp:docs.` for one MCP server's tools); None: any."""
    tenants: frozenset[str] | None = None
    """Tenants the rule is about; None for every tenant."""
    routes: frozenset[str] | None = None
    """Routes the rule is about; None for every route."""
    conditions: tuple[tuple[str, ConditionTest], ...] = ()
    """Input and run-metric tests, by operator name; all must match."""

    def match(self, call: _Call) -> str | None:
        """What matched, or None when the rule does not apply to `call`."""
        if ((self.tools is not None and call.tool not in self.tools)
                or (self.tool_prefixes is not None and not call.tool.startswith(self.tool_prefixes))
                or (self.tenants is not None and call.tenant not in self.tenants)
                or (self.routes is not None and call.route not in self.routes)):
            return None
        found: list[str] = []
        for op, test in self.conditions:
            try:
                verdict, what = test(call)
            except Exception as exc:  # noqa: BLE001 - a guard that crashes must not let the call through
                verdict, what = None, f"{op} failed ({exc})"
            if verdict is False:
                return None
            if verdict is None:
                # Unknown counts against the call: it makes deny rules apply, never allow rules.
                if self.action == "allow":
                    return None
                what = f"{what}, so the rule applies"
            found.append(what)
        if found:
            return "; ".join(found)
        scope = [(self.tools, call.tool, "tool"), (self.tenants, call.tenant, "tenant"),
                 (self.routes, call.route, "route")]
        return ", ".join(
            f"{kind} is {value}" for allowed, value, kind in scope if allowed is not None
        ) or "the rule matches every call"


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A loaded, validated policy."""

    version: str
    """`sha256:` and the first 16 hex digits of the file's hash."""
    rules: tuple[Rule, ...]
    """Rules in file order."""
    default: Action = "allow"
    """The action when no rule matches."""
    source: str = "<string>"
    """Where the policy came from, for messages."""
    registry: ToolCatalog | None = None
    """Tools calls must belong to; with it, unknown tools and bad inputs are denied."""
    _rules_for_tool: Mapping[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    """For each tool some rule names: the rules that can apply to its calls, in file order."""
    _rules_for_any_tool: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    """The rules without a tool scope: all that can apply to a tool no rule names."""

    def __post_init__(self) -> None:
        # Index the rules once, so a call is checked only against those that can match it.
        # File order is kept: it breaks ties between equally restrictive matches.
        named = {tool for rule in self.rules for tool in rule.tools or ()}
        by_tool = {tool: tuple(r for r in self.rules if r.tools is None or tool in r.tools)
                   for tool in named}
        object.__setattr__(self, "_rules_for_tool", by_tool)
        object.__setattr__(self, "_rules_for_any_tool",
                           tuple(r for r in self.rules if r.tools is None))

    def evaluate(
        self,
        *,
        tool: str,
        input: Mapping[str, Any],
        run_metrics: Mapping[str, float | None],
        tenant_id: str = "",
        route: str = "",
        registry: ToolCatalog | None = None,
    ) -> Decision:
        """Decide one proposed call.

        `run_metrics` are the run's counters before this call; rules compare them as they would
        stand after it (one more tool call, ticket or e-mail, plus the tool's registered cost).
        """
        catalog = registry if registry is not None else self.registry
        if not isinstance(input, Mapping):
            return self._deny(f"input of {tool} is not an object")
        spec = catalog.get(tool) if catalog is not None else None
        if catalog is not None:
            if spec is None:
                return self._deny(f"tool {tool!r} is not registered; unknown tools are denied")
            problems = spec.input_errors(dict(input))
            if problems:
                return self._deny(f"input does not fit {tool}'s schema: {'; '.join(problems)}")
        call = _Call(tool, input, _after_call(run_metrics, tool, spec), tenant_id, route)
        candidates = self._rules_for_tool.get(tool, self._rules_for_any_tool)
        matches = [(r, what) for r in candidates if (what := r.match(call)) is not None]
        if not matches:
            return Decision(self.default, None, f"no rule matched; the policy default is "
                            f"{self.default}", self.version)
        rule, what = max(matches, key=lambda m: _RANK[m[0].action])  # first of equals wins
        reason = f"rule {rule.name}: {what}"
        others = [r.name for r, _ in matches if r is not rule]
        if others:
            reason += f" (also matched: {', '.join(others)})"
        return Decision(rule.action, rule.name, reason, self.version)

    def counts_tool_usage(self, tool: str) -> bool:
        """Whether a rule that may apply to `tool` compares its calls (`tool_run_calls`, …)."""
        rules = self._rules_for_tool.get(tool, self._rules_for_any_tool)
        return any(op.startswith(TOOL_USAGE_METRICS) for r in rules for op, _ in r.conditions)

    def _deny(self, reason: str) -> Decision:
        return Decision("deny", None, reason, self.version)


def _after_call(
    metrics: Mapping[str, float | None], tool: str, spec: ToolContract | None
) -> dict[str, float | None]:
    # Rules read the counters as they would stand if this call ran, so
    # `tickets_created_gt: 3` caps a run at three tickets rather than four.
    bump = {"tool_calls": 1.0, "cost_usd": spec.cost_usd if spec is not None else 0.0,
            "tool_run_calls": 1.0, "tool_tenant_calls": 1.0}
    if tool in _COUNTED_BY_TOOL:
        bump[_COUNTED_BY_TOOL[tool]] = 1.0
    out: dict[str, float | None] = {}
    for name in METRICS:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value) + bump.get(name, 0.0)
        else:
            out[name] = None
    return out


# ---- input operators: each takes the rule's argument, checks it, and returns the test --------


def _sql_matches_regex(arg: object) -> ConditionTest:
    pattern = _require(arg, str, "a regular expression")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc

    def test(call: _Call) -> Verdict:
        if "sql" not in call.input:
            return False, ""
        sql = call.input["sql"]
        if not isinstance(sql, str):
            return None, "sql is not text"
        found = rx.search(sql)
        return (True, f"sql matches {pattern} at {found.group(0)!r}") if found else (False, "")

    return test


def _sql_writes(arg: object) -> ConditionTest:
    wanted = _require(arg, bool, "true or false")

    def test(call: _Call) -> Verdict:
        if "sql" not in call.input:
            return False, ""
        sql = call.input["sql"]
        writes, why = _statement_kinds(sql) if isinstance(sql, str) else (True, "sql is not text")
        if writes != wanted:
            return False, ""
        return True, f"sql writes ({why})" if writes else f"sql only reads ({why})"

    return test


# Parsing is most of a decision's cost (100-400 µs for a short statement with pure-Python
# sqlglot, against ~25 µs for the rest of a decision), and agents repeat their queries, so a
# repeated string costs a dict lookup; a string not seen before still pays the full parse.
# The cache is bounded because its keys come from callers: unbounded, a stream of distinct SQL
# would grow it without limit.
@lru_cache(maxsize=1024)
def _statement_kinds(sql: str) -> tuple[bool, str]:
    """(writes?, why): anything the parser cannot prove to be a plain read counts as a write."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except Exception:  # noqa: BLE001 - sqlglot raises more than its own errors on hostile input
        return True, "the SQL could not be parsed"
    if not statements:
        return True, "no SQL statement found"
    for s in statements:
        if not isinstance(s, _READ_ROOTS):
            return True, f"a {type(s).__name__.upper()} statement"
        for node in s.walk():
            if isinstance(node, _WRITE_NODES):
                return True, f"a {type(s).__name__.upper()} statement"
            if isinstance(node, exp.Into):
                return True, "SELECT … INTO"
            if (name := _called(node)) is not None and name in _UNSAFE_FUNCTIONS:
                return True, f"calls {name}, which {_UNSAFE_FUNCTIONS[name]}"
    return False, f"{len(statements)} SELECT statement(s)"


def _called(node: exp.Expr) -> str | None:
    """The lowercase name of the function `node` calls, or None when it calls none."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        # sqlglot parses some names into classes of its own (READ_CSV into ReadCSV).
        return next((n.lower() for n in node.sql_names() if n.lower() in _UNSAFE_FUNCTIONS), None)
    # A keyword-like name (FILE) makes sqlglot read `FROM file('x')` as a table with column
    # aliases; SQLite has no such alias syntax, so that is a table-valued call.
    alias = node.args.get("alias") if isinstance(node, exp.Table) else None
    if isinstance(alias, exp.TableAlias) and not alias.name and alias.columns:
        return node.name.lower()
    return None


def _recipient_domains(arg: object, *, every_inside: bool) -> ConditionTest:
    items = _require(arg, list, "a list of domains")
    domains = [_domain(d) if isinstance(d, str) else None for d in items]
    if not domains or None in domains:
        raise ValueError(f"expects a non-empty list of domain names, got {arg!r}")
    allowed = frozenset(cast(list[str], domains))
    shown = ", ".join(sorted(allowed))

    def test(call: _Call) -> Verdict:
        found = call.recipients
        if found is None:
            return False, ""
        outside = [addr for addr, domain in found if domain not in allowed]
        if every_inside:
            if outside:
                return False, ""
            return True, f"every recipient is in {shown}: {', '.join(addr for addr, _ in found)}"
        if not outside:
            return False, ""
        return True, f"recipient outside {shown}: {', '.join(outside)}"

    return test


def _recipients(call_input: Mapping[str, Any]) -> list[Recipient] | None:
    """Every (address, domain) of to/cc/bcc; domain None when it cannot be trusted."""
    fields = [call_input[k] for k in ("to", "cc", "bcc") if k in call_input]
    if not fields:
        return None
    found: list[Recipient] = []
    for value in fields:
        for item in value if isinstance(value, list) else [value]:
            found.extend(_addresses(item) if isinstance(item, str) else [(f"unparseable {item!r}", None)])
    return found or [("no recipient", None)]


# Cached for the same reason as _statement_kinds (every call to send_email parses its
# recipients), and bounded for the same reason: the keys are whatever callers send.
@lru_cache(maxsize=4096)
def _addresses(item: str) -> tuple[Recipient, ...]:
    """The (address, domain) pairs of one to/cc/bcc entry, which may list several."""
    text = item.strip().strip(",").strip()
    parsed = getaddresses([text]) if text else []
    if not parsed:
        return ((f"unparseable {item!r}", None),)
    found: list[Recipient] = []
    for _, addr in parsed:
        local, at, domain = addr.rpartition("@")
        ok = bool(at and local) and not set(local) & set("<>[]")
        found.append((addr or f"unparseable {item!r}", _domain(domain) if ok else None))
    return tuple(found)


def _domain(text: str) -> str | None:
    try:
        domain = text.strip().rstrip(".").lower().encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if _HOSTNAME.fullmatch(domain) else None


def _field_equals(arg: object) -> ConditionTest:
    expected = _require(arg, dict, "a mapping of field to value")
    if not expected or not all(isinstance(k, str) for k in expected):
        raise ValueError("expects a non-empty mapping of field names to values")

    def test(call: _Call) -> Verdict:
        if not all(k in call.input and _same(call.input[k], v) for k, v in expected.items()):
            return False, ""
        return True, f"input has {', '.join(f'{k} == {v!r}' for k, v in expected.items())}"

    return test


def _same(a: object, b: object) -> bool:
    # YAML's `true` must not equal an input's 1, nor "1" equal 1.
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and bool not in (type(a), type(b)):
        return a == b
    return type(a) is type(b) and a == b


_INPUT_OPERATORS: dict[str, Callable[[object], ConditionTest]] = {
    "sql_matches_regex": _sql_matches_regex,
    "sql_writes": _sql_writes,
    "recipient_domain_in": lambda arg: _recipient_domains(arg, every_inside=True),
    "recipient_domain_not_in": lambda arg: _recipient_domains(arg, every_inside=False),
    "field_equals": _field_equals,
}


def _metric_test(key: str, arg: object) -> ConditionTest:
    metric, _, op = key.rpartition("_")
    if metric not in METRICS or op not in _COMPARISONS:
        raise ValueError(f"unknown run metric test {key!r} (metrics: {', '.join(METRICS)}; "
                         f"comparisons: {', '.join('_' + c for c in _COMPARISONS)})")
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise ValueError(f"{key} expects a number, got {arg!r}")  # becomes PolicyError
    compare, symbol = _COMPARISONS[op]
    limit = float(arg)

    def test(call: _Call) -> Verdict:
        value = call.metrics.get(metric)
        if value is None:
            return None, f"{metric} is unknown"
        if not compare(value, limit):
            return False, ""
        return True, f"{metric} {value:g} {symbol} {limit:g} counting this call"

    return test


def _require(value: object, kind: type[Any], wanted: str) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"expects {wanted}, got {value!r}")  # becomes PolicyError
    return value


# ---- loading ----------------------------------------------------------------------------------

_TOP_KEYS = {"version", "default", "rules", "description"}
_RULE_KEYS = {"name", "when", "action", "description"}
_WHEN_KEYS = {"tool", "tool_prefix", "tenant", "route", "input", "run_metrics"}


def load_policy(path: str | PathLike[str], *, registry: ToolCatalog | None = None) -> Policy:
    """Read and validate a policy file; with `registry`, rules may only name its tools."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy ({exc})") from exc
    return parse_policy(data, source=str(path), registry=registry)


def parse_policy(
    text: str | bytes, *, source: str = "<string>", registry: ToolCatalog | None = None
) -> Policy:
    """Validate a policy given as YAML text; `source` names it in error messages."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        doc = load_strict(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: a policy is a mapping with 'version' and 'rules'")
    if unknown := set(doc) - _TOP_KEYS:
        raise PolicyError(f"{source}: unknown top-level keys {sorted(map(str, unknown))}")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        raise PolicyError(f"{source}: 'version' must be 1, got {doc.get('version')!r}")
    default = doc.get("default", "allow")
    if default not in _RANK:
        raise PolicyError(f"{source}: unknown default action {default!r} (use {_actions()})")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        raise PolicyError(f"{source}: 'rules' must be a list")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"{source}: rule {name!r} (rules[{i}])" if name else f"{source}: rules[{i}]"
        try:
            rule = _parse_rule(raw, registry)
        except ValueError as exc:
            raise PolicyError(f"{where}: {exc}") from exc
        if any(r.name == rule.name for r in rules):
            raise PolicyError(f"{where}: duplicate rule name {rule.name!r}")
        rules.append(rule)
    version = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    return Policy(version=version, rules=tuple(rules), default=cast(Action, default),
                  source=source, registry=registry)


def _parse_rule(raw: object, registry: ToolCatalog | None) -> Rule:
    rule = _require(raw, dict, "a mapping with name, when and action")
    if unknown := set(rule) - _RULE_KEYS:
        raise ValueError(f"unknown keys {sorted(map(str, unknown))}")
    name = rule.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("'name' must be a non-empty string")
    action = rule.get("action")
    if action not in _RANK:
        raise ValueError(f"unknown action {action!r} (use {_actions()})")
    when = _require(rule.get("when"), dict, "'when' to be a mapping")
    if unknown := set(when) - _WHEN_KEYS:
        raise ValueError(f"unknown 'when' keys {sorted(map(str, unknown))} "
                         f"(use {sorted(_WHEN_KEYS)})")
    tools = _names(when, "tool")
    missing = [] if registry is None else sorted(t for t in tools or () if registry.get(t) is None)
    if missing:  # a misspelt tool name would make the rule silently never match
        raise ValueError(f"unknown tools {missing}")
    conditions: list[tuple[str, ConditionTest]] = []
    for op, arg in _require(when.get("input", {}), dict, "'input' to be a mapping").items():
        if op not in _INPUT_OPERATORS:
            raise ValueError(f"unknown input operator {op!r} (use {sorted(_INPUT_OPERATORS)})")
        try:
            input_test = _INPUT_OPERATORS[op](arg)
        except ValueError as exc:
            raise ValueError(f"{op} {exc}") from exc
        conditions.append((op, input_test))
    metric_tests = _require(when.get("run_metrics", {}), dict, "'run_metrics' to be a mapping")
    for key, arg in metric_tests.items():
        conditions.append((str(key), _metric_test(str(key), arg)))
    prefixes = _names(when, "tool_prefix")
    return Rule(name=name, action=cast(Action, action), tools=tools, tenants=_names(when, "tenant"),
                tool_prefixes=tuple(sorted(prefixes)) if prefixes is not None else None,
                routes=_names(when, "route"), conditions=tuple(conditions))


def _names(when: Mapping[str, Any], key: str) -> frozenset[str] | None:
    if key not in when:
        return None
    value = when[key]
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"'{key}' must be a name or a non-empty list of names, got {value!r}")
    return frozenset(names)


def _actions() -> str:
    return ", ".join(get_args(Action))
