"""Per-decision latency of the policy engine, and of Cedar making the same decisions.

    .venv/bin/python -m tests.benchmarks.bench_policy [--calls 10000] [--warmup 1000] [--seed 7]

One generated set of ~50 rules is rendered twice, as our YAML and as a Cedar policy set, so
the two encode the same intent rule by rule. ~10,000 generated calls go through each; every
call is timed on its own with time.perf_counter_ns after a warm-up on other calls, and the
two engines' decisions are compared call by call.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import cedarpy
import yaml

from policies import Decision, Policy, parse_policy
from policies.engine import _after_call, _recipients, _statement_kinds
from processors.tools.registry import ToolRegistry, default_registry

__all__ = ["main"]

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"]
ROUTES = ["default", "support", "batch"]
TOOLS = ["query_sql", "send_email", "create_ticket", "search_docs"]
SQL_WORDS = ["delete", "drop", "truncate", "alter", "grant", "revoke", "vacuum", "attach",
             "pragma", "replace"]
INTERNAL = ["yourcompany.com", "corp.yourcompany.com"]
PARTNERS = ["partner.org", "supplier.io", "agency.co", "bank.example", "law.example"]
EXTERNAL = ["gmail.com", "outlook.com", "proton.me", "evil.io", "rival.io"]
METRIC_TOOLS = [None, *TOOLS]
_RANK = {"allow": 0, "require_human_approval": 1, "deny": 2}


# ---- one rule set, two renderings --------------------------------------------------------------


@dataclass
class RuleSpec:
    name: str
    action: str
    tools: list[str] | None = None
    tenants: list[str] | None = None
    route: str | None = None
    sql_words: list[str] | None = None
    sql_writes: bool | None = None
    domains_not_in: list[str] | None = None
    domains_in: list[str] | None = None
    field_equals: dict[str, Any] = field(default_factory=dict)
    metric: tuple[str, str, float] | None = None

    def yaml_rule(self) -> dict[str, Any]:
        when: dict[str, Any] = {}
        if self.tools:
            when["tool"] = self.tools
        if self.tenants:
            when["tenant"] = self.tenants
        if self.route:
            when["route"] = self.route
        inputs: dict[str, Any] = {}
        if self.sql_words:
            inputs["sql_matches_regex"] = rf"(?i)\b({'|'.join(self.sql_words)})\b"
        if self.sql_writes is not None:
            inputs["sql_writes"] = self.sql_writes
        if self.domains_not_in:
            inputs["recipient_domain_not_in"] = self.domains_not_in
        if self.domains_in:
            inputs["recipient_domain_in"] = self.domains_in
        if self.field_equals:
            inputs["field_equals"] = self.field_equals
        if inputs:
            when["input"] = inputs
        if self.metric:
            metric, op, limit = self.metric
            when["run_metrics"] = {f"{metric}_{op}": limit}
        return {"name": self.name, "when": when, "action": self.action}

    def cedar_policy(self) -> str:
        scope = ["principal", "action", "resource"]
        if self.tenants:
            scope[0] = _cedar_in("principal", "Tenant", self.tenants)
        if self.tools:
            scope[2] = _cedar_in("resource", "Tool", self.tools)
        conds: list[str] = []
        if self.route:
            conds.append(f"context.route == {json.dumps(self.route)}")
        if self.sql_words:
            # No regex in Cedar: `like` on host-lowercased text, with no word boundaries.
            likes = " || ".join(f'context.sql_lower like "*{w}*"' for w in self.sql_words)
            conds.append(f"context.has_sql && ({likes})")
        if self.sql_writes is not None:
            conds.append(f"context.has_sql && context.sql_writes == {str(self.sql_writes).lower()}")
        if self.domains_not_in:
            conds.append(f"context.has_recipients && "
                         f"!({json.dumps(self.domains_not_in)}.containsAll(context.recipient_domains))")
        if self.domains_in:
            conds.append(f"context.has_recipients && "
                         f"{json.dumps(self.domains_in)}.containsAll(context.recipient_domains)")
        for key, value in self.field_equals.items():
            conds.append(f"context.input has {key} && context.input.{key} == {json.dumps(value)}")
        if self.metric:
            metric, op, limit = self.metric
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=="}[op]
            if metric == "cost_usd":  # no floats in Cedar: compare micro-dollars as Long
                conds.append(f"context.metrics.cost_micros {symbol} {round(limit * 1e6)}")
            else:
                conds.append(f"context.metrics.{metric} {symbol} {int(limit)}")
        effect = "permit" if self.action == "allow" else "forbid"
        body = f"{effect}({', '.join(scope)})"
        return body + (f" when {{ {' && '.join(conds)} }};" if conds else ";")


def _cedar_in(var: str, kind: str, names: list[str]) -> str:
    if len(names) == 1:
        return f'{var} == {kind}::"{names[0]}"'
    return f"{var} in [{', '.join(f'{kind}::{json.dumps(n)}' for n in names)}]"


def generate_rules(rng: random.Random) -> list[RuleSpec]:
    rules: list[RuleSpec] = [RuleSpec(f"sql_regex_{i}", "deny", tools=["query_sql"],
                                      tenants=[rng.choice(TENANTS)] if i % 3 == 2 else None,
                                      sql_words=rng.sample(SQL_WORDS, rng.randint(1, 4)))
                             for i in range(8)]
    rules.append(RuleSpec("sql_writes_denied", "deny", tools=["query_sql"], sql_writes=True))
    rules.append(RuleSpec("batch_reads_reviewed", "require_human_approval", tools=["query_sql"],
                          route="batch", sql_writes=False))
    for i, tenant in enumerate(TENANTS * 2):
        allowed = INTERNAL[: 1 + i % 2] + rng.sample(PARTNERS, i % 3)
        rules.append(RuleSpec(f"mail_outside_{tenant}_{i}", "require_human_approval",
                              tools=["send_email"], tenants=[tenant], domains_not_in=allowed))
    rules.extend(RuleSpec(f"mail_partners_ok_{i}", "allow", tools=["send_email"],
                          domains_in=INTERNAL + rng.sample(PARTNERS, 2)) for i in range(4))
    metrics = [("tickets_created", "gt", 3), ("emails_sent", "gte", 5), ("tool_calls", "gt", 15),
               ("cost_usd", "gt", 0.04), ("tickets_created", "eq", 2), ("emails_sent", "gt", 2),
               ("tool_calls", "gte", 12), ("cost_usd", "gte", 0.03)]
    for i in range(16):
        metric, op, limit = metrics[i % len(metrics)]
        tool = METRIC_TOOLS[i % len(METRIC_TOOLS)]
        rules.append(RuleSpec(f"metric_{metric}_{op}_{i}", "deny" if i % 4 else "require_human_approval",
                              tools=[tool] if tool else None,
                              tenants=[TENANTS[i % len(TENANTS)]] if i % 5 == 4 else None,
                              metric=(metric, op, limit + (i // len(metrics)))))
    for i, (tool, fields, action) in enumerate([
        ("create_ticket", {"priority": "high"}, "require_human_approval"),
        ("create_ticket", {"priority": "low", "title": "spam"}, "deny"),
        ("search_docs", {"top_k": 20}, "deny"),
        ("search_docs", {"query": "salaries"}, "require_human_approval"),
        ("send_email", {"subject": "password reset"}, "deny"),
        ("create_ticket", {"priority": "normal"}, "allow"),
    ]):
        rules.append(RuleSpec(f"field_{tool}_{i}", action, tools=[tool], field_equals=fields))
    rules.append(RuleSpec("initech_mail_reviewed", "require_human_approval", tools=["send_email"],
                          tenants=["initech"]))
    rules.append(RuleSpec("batch_tickets_denied", "deny", tools=["create_ticket"], route="batch"))
    rules.append(RuleSpec("hooli_support_docs_ok", "allow", tools=["search_docs"], tenants=["hooli"],
                          route="support"))
    rules.append(RuleSpec("umbrella_sql_reviewed", "require_human_approval", tools=["query_sql"],
                          tenants=["umbrella"]))
    return rules


def render_yaml(rules: Sequence[RuleSpec]) -> str:
    return yaml.safe_dump({"version": 1, "default": "allow",
                           "rules": [r.yaml_rule() for r in rules]}, sort_keys=False)


def render_cedar(rules: Sequence[RuleSpec]) -> str:
    # The base permit is policy0, so rules[i] is policy{i + 1}: the default is allow, as ours.
    return "\n".join(["permit(principal, action, resource);", *(r.cedar_policy() for r in rules)])


# ---- calls ----------------------------------------------------------------------------------------

_FIXED_SQL = [
    "SELECT COUNT(*) FROM customers WHERE country = 'DE'", "SELECT * FROM orders LIMIT 10",
    "SELECT dropped_at, deleted_flag FROM audit", "select sum(amount) from orders group by status",
    "DROP TABLE orders", "DeLeTe FROM orders WHERE status = 'refunded'", "TRUNCATE TABLE customers",
    "UPDATE customers SET plan = 'enterprise' WHERE id = 3", "INSERT INTO orders (id) VALUES (1)",
    "PRAGMA writable_schema = 1", "SELECT 1; DROP TABLE orders", "DR/**/OP TABLE orders",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t", "SELECT name FROM products WHERE name LIKE '%alter%'",
    "GRANT ALL ON orders TO bob", "VACUUM", "SELECT * FROM replacements",
]


def _sql(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_FIXED_SQL)
    n = rng.randint(1, 100_000)
    return rng.choice([
        f"SELECT * FROM orders WHERE customer_id = {n}",
        f"SELECT name, email FROM customers WHERE id = {n} ORDER BY name",
        f"DELETE FROM orders WHERE id = {n}",
        f"UPDATE orders SET status = 'paid' WHERE id = {n}",
        f"SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount > {n}",
    ])


def _address(rng: random.Random) -> str:
    domain = rng.choice(rng.choice([INTERNAL, PARTNERS, EXTERNAL]))
    local = rng.choice(["jane", "ops", "boss", "a.b"])
    if rng.random() < 0.3:
        domain = domain.upper()
    return f'"{local.title()}" <{local}@{domain}>' if rng.random() < 0.3 else f"{local}@{domain}"


def generate_calls(rng: random.Random, n: int) -> list[dict[str, Any]]:
    calls = []
    for _ in range(n):
        tool = rng.choices(TOOLS, weights=[40, 25, 20, 15])[0]
        if tool == "query_sql":
            call_input: dict[str, Any] = {"sql": _sql(rng)}
        elif tool == "send_email":
            to = [_address(rng) for _ in range(rng.randint(1, 3))]
            call_input = {"to": ", ".join(to) if rng.random() < 0.5 else to,
                          "subject": rng.choice(["Q3", "password reset", "Delay"]), "body": "x"}
            if rng.random() < 0.3:
                call_input["bcc"] = [_address(rng)]
        elif tool == "create_ticket":
            call_input = {"title": rng.choice(["Checkout 500", "spam", "Login"]), "description": "d",
                          "priority": rng.choice(["low", "normal", "high"])}
        else:
            call_input = {"query": rng.choice(["refunds", "salaries", "rate limits"]),
                          "top_k": rng.choice([5, 10, 20])}
        calls.append({
            "tool": tool, "input": call_input, "tenant_id": rng.choice(TENANTS),
            "route": rng.choice(ROUTES),
            "run_metrics": {"tool_calls": rng.randint(0, 16), "tickets_created": rng.randint(0, 5),
                            "emails_sent": rng.randint(0, 6), "cost_usd": round(rng.uniform(0, 0.05), 4)},
        })
    return calls


# ---- the two engines ------------------------------------------------------------------------------


class _CostsOnly:
    """The registry's costs without its input schemas: our rule evaluation alone."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry

    def get(self, name: str) -> Any:
        spec = self._registry.get(name)
        return None if spec is None else _NoSchema(spec.cost_usd)


@dataclass(frozen=True)
class _NoSchema:
    cost_usd: float

    def input_errors(self, value: object) -> list[str]:
        return []


def ours(policy: Policy) -> Callable[[dict[str, Any]], tuple[str, str | None]]:
    def decide(call: dict[str, Any]) -> tuple[str, str | None]:
        d: Decision = policy.evaluate(tool=call["tool"], input=call["input"],
                                      run_metrics=call["run_metrics"], tenant_id=call["tenant_id"],
                                      route=call["route"])
        return d.action, d.rule

    return decide


class Cedar:
    """Cedar deciding the same calls; the host computes what Cedar cannot (SQL kind, domains)."""

    def __init__(self, rules: Sequence[RuleSpec], registry: ToolRegistry) -> None:
        self.rules = list(rules)
        self.registry = registry
        self.policies = cedarpy.PolicySet.from_str(render_cedar(rules))
        self.entities = cedarpy.Entities.from_json_str(json.dumps(
            [{"uid": {"type": "Tenant", "id": t}, "attrs": {}, "parents": []} for t in TENANTS]
            + [{"uid": {"type": "Tool", "id": t.name},
                "attrs": {"side_effects": t.side_effects, "cost_micros": round(t.cost_usd * 1e6)},
                "parents": []} for t in registry]))
        # The same parser and cache size as the engine, but a cache of its own.
        self.sql_writes = lru_cache(maxsize=1024)(_statement_kinds.__wrapped__)
        self.errors = 0
        self.authz_us: list[int] = []
        """Cedar's own evaluation time per call, as cedarpy reports it (authz_duration_micros)."""

    def request(self, call: dict[str, Any]) -> dict[str, Any]:
        call_input = call["input"]
        sql = call_input.get("sql")
        found = _recipients(call_input)
        after = _after_call(call["run_metrics"], call["tool"], self.registry.get(call["tool"]))
        metrics = {k: int(v or 0) for k, v in after.items() if k != "cost_usd"}
        metrics["cost_micros"] = round((after["cost_usd"] or 0.0) * 1e6)
        return {
            "principal": {"type": "Tenant", "id": call["tenant_id"]},
            "action": {"type": "Action", "id": "call"},
            "resource": {"type": "Tool", "id": call["tool"]},
            "context": {
                "route": call["route"],
                "has_sql": isinstance(sql, str),
                "sql_lower": sql.lower() if isinstance(sql, str) else "",
                "sql_writes": self.sql_writes(sql)[0] if isinstance(sql, str) else False,
                "has_recipients": found is not None,
                "recipient_domains": sorted({d or "" for _, d in found or ()}),
                "input": {k: v for k, v in call_input.items() if isinstance(v, (str, bool, int))},
                "metrics": metrics,
            },
        }

    def decision(self, result: cedarpy.AuthzResult) -> tuple[str, str | None]:
        if result.diagnostics.errors:
            self.errors += 1
        self.authz_us.append(result.metrics.get("authz_duration_micros", 0))
        if result.allowed:
            # Which permit decided is not ours to pick; report the first allow rule, as ours does.
            ids = sorted(int(p[6:]) for p in result.diagnostics.reasons if p != "policy0")
            return "allow", self.rules[ids[0] - 1].name if ids else None
        matched = sorted(int(p[6:]) - 1 for p in result.diagnostics.reasons)
        rank = max(_RANK[self.rules[i].action] for i in matched)
        first = next(i for i in matched if _RANK[self.rules[i].action] == rank)
        return self.rules[first].action, self.rules[first].name

    def end_to_end(self, call: dict[str, Any]) -> tuple[str, str | None]:
        return self.decision(cedarpy.is_authorized(self.request(call), self.policies, self.entities))

    def authorize(self, request: dict[str, Any]) -> tuple[str, str | None]:
        return self.decision(cedarpy.is_authorized(request, self.policies, self.entities))


# ---- measuring ------------------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    ns: list[int]

    def row(self) -> tuple[str, float, float, float]:
        ordered = sorted(self.ns)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
        return self.label, pick(0.50), pick(0.99), statistics.fmean(ordered) / 1000


def timed(label: str, decide: Callable[[Any], tuple[str, str | None]], items: Sequence[Any],
          warmup: Sequence[Any]) -> tuple[Timing, list[tuple[str, str | None]]]:
    for item in warmup:
        decide(item)
    gc.collect()  # start each timed loop with no garbage left by the previous one
    ns: list[int] = []
    out: list[tuple[str, str | None]] = []
    clock = time.perf_counter_ns
    for item in items:
        start = clock()
        result = decide(item)
        ns.append(clock() - start)
        out.append(result)
    return Timing(label, ns), out


def main(argv: Sequence[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--calls", type=int, default=10_000)
    args.add_argument("--warmup", type=int, default=1_000)
    args.add_argument("--seed", type=int, default=7)
    args.add_argument("--repeat", type=int, default=3, help="rounds; each engine's best round counts")
    opts = args.parse_args(argv)

    rng = random.Random(opts.seed)
    rules = generate_rules(rng)
    calls = generate_calls(rng, opts.calls)
    warm = generate_calls(random.Random(opts.seed + 1), opts.warmup)  # other strings: no cache hits
    registry = default_registry()
    text = render_yaml(rules)
    guard_policy = parse_policy(text, source="bench.yaml", registry=registry)
    rules_policy = parse_policy(text, source="bench.yaml", registry=_CostsOnly(registry))
    cedar = Cedar(rules, registry)

    prebuilt, prewarm = [cedar.request(c) for c in calls], [cedar.request(c) for c in warm]
    best: dict[str, Timing] = {}
    # Each round runs every engine once, from cold caches; the round with the lowest mean counts
    # for each engine (as timeit does), so a noisy neighbour on a shared machine weighs less.
    for _ in range(opts.repeat):
        _statement_kinds.cache_clear()
        t_guard, d_guard = timed("ours: guard path (schema check + rules)", ours(guard_policy), calls, warm)
        _statement_kinds.cache_clear()
        t_ours, d_ours = timed("ours: rules only", ours(rules_policy), calls, warm)
        cedar.sql_writes.cache_clear()
        t_cedar, d_cedar = timed("cedar: host attributes + is_authorized", cedar.end_to_end, calls, warm)
        t_core, d_core = timed("cedar: is_authorized only (prebuilt)", cedar.authorize, prebuilt, prewarm)
        inside = Timing("  of which Cedar evaluating (its own metric)",
                        [us * 1000 for us in cedar.authz_us[-len(prebuilt):]])
        for t in (t_guard, t_ours, t_cedar, t_core, inside):
            if t.label not in best or t.row()[3] < best[t.label].row()[3]:
                best[t.label] = t
    t_guard, t_ours, t_cedar, t_core, inside = best.values()
    cedarpy.is_authorized_batch(prewarm, cedar.policies, cedar.entities)
    batch_means = []
    for _ in range(opts.repeat):
        gc.collect()
        start = time.perf_counter_ns()
        batch = cedarpy.is_authorized_batch(prebuilt, cedar.policies, cedar.entities)
        batch_means.append((time.perf_counter_ns() - start) / len(prebuilt) / 1000)
    batch_mean = min(batch_means)
    d_batch = [cedar.decision(r) for r in batch]

    print(f"policy benchmark: {len(rules)} rules, {len(calls):,} calls (seed {opts.seed}), "
          f"warm-up {len(warm):,} other calls, best of {opts.repeat} rounds; "
          f"Python {platform.python_version()}, "
          f"cedarpy {version('cedarpy')}, sqlglot {version('sqlglot')}, {platform.machine()}")
    print("per decision, µs (time.perf_counter_ns around each call)\n")
    print(f"{'engine':<44}{'p50':>9}{'p99':>9}{'mean':>9}")
    for t in (t_guard, t_ours, t_cedar, t_core):
        label, p50, p99, mean = t.row()
        print(f"{label:<44}{p50:>9.1f}{p99:>9.1f}{mean:>9.1f}")
    label, p50, p99, mean = inside.row()
    print(f"{label:<44}{p50:>9.1f}{p99:>9.1f}{mean:>9.1f}")
    print(f"{'cedar: is_authorized_batch (all calls, mean)':<44}{'-':>9}{'-':>9}{batch_mean:>9.1f}")
    print()
    for ours_t, cedar_t, what in [(t_ours, t_cedar, "rules only / cedar end to end"),
                                  (t_guard, t_cedar, "guard path / cedar end to end"),
                                  (t_ours, t_core, "rules only / cedar is_authorized only")]:
        o, c = ours_t.row(), cedar_t.row()
        print(f"ratio ours/cedar, {what + ':':<40} p50 {o[1] / c[1]:5.2f}x  p99 {o[2] / c[2]:5.2f}x  "
              f"mean {o[3] / c[3]:5.2f}x")
    print()
    _print_agreement(calls, d_guard, d_ours, d_cedar, d_core, d_batch, cedar.errors)
    _print_equivalence()


def _print_agreement(calls: Sequence[dict[str, Any]], d_guard: list[Any], d_ours: list[Any],
                     d_cedar: list[Any], d_core: list[Any], d_batch: list[Any], errors: int) -> None:
    n = len(calls)
    same_action = sum(a[0] == b[0] for a, b in zip(d_ours, d_cedar, strict=True))
    same_rule = sum(a == b for a, b in zip(d_ours, d_cedar, strict=True))
    guard_same = sum(a == b for a, b in zip(d_guard, d_ours, strict=True))
    print(f"decisions: ours guard path == ours rules only on {guard_same:,}"
          f"/{n:,}; cedar prebuilt and batch == cedar end to end on "
          f"{sum(a == b == c for a, b, c in zip(d_cedar, d_core, d_batch, strict=True)):,}/{n:,}; "
          f"cedar evaluation errors {errors}")
    print(f"ours vs cedar: same action on {same_action:,}/{n:,} calls, same action and deciding rule "
          f"on {same_rule:,}/{n:,}")
    diffs = Counter((c["tool"], a[1] or "-", b[1] or "-")
                    for c, a, b in zip(calls, d_ours, d_cedar, strict=True) if a != b)
    for (tool, ours_rule, cedar_rule), count in diffs.most_common(6):
        example = next(c["input"].get("sql", c["input"])
                       for c, a, b in zip(calls, d_ours, d_cedar, strict=True)
                       if a != b and (c["tool"], a[1] or "-", b[1] or "-") == (tool, ours_rule, cedar_rule))
        print(f"  {count:5,} {tool}: ours {ours_rule}, cedar {cedar_rule}  e.g. {json.dumps(example)[:70]}")
    print()


def _print_equivalence() -> None:
    print("equivalent by construction (one rule list rendered both ways):")
    for line in [
        "tool, tenant and route scopes (resource == Tool, principal == Tenant, context.route)",
        "recipient_domain_in / _not_in: containsAll over the domains of to/cc/bcc",
        "run-metric comparisons on the counters as they stand after the call (host adds the call)",
        "field_equals on scalar input fields; the default (allow: a base permit)",
        ("most restrictive wins: Cedar's forbid-overrides-permit, and the forbid's action read "
         "from the deciding policy ids (Cedar has two outcomes, we have three)"),
    ]:
        print(f"  - {line}")
    print("not equivalent:")
    for line in [
        ("sql_matches_regex: Cedar has no regular expressions; `like \"*word*\"` on lowercased "
         "text stands in, without word boundaries (so 'dropped_at' matches 'drop')"),
        ("sql_writes and e-mail parsing: Cedar cannot parse SQL or addresses; the host computes "
         "them (the engine's own sqlglot check and address parser) and that time is in Cedar's "
         "end-to-end row, not in its is_authorized-only row"),
        "cost_usd: Cedar has no floats; micro-dollars as Long",
        "input schema checks and fail-closed denial of unknown tools: only in our guard path",
        "an unknown counter makes our deny rules apply; Cedar skips a policy that errors",
    ]:
        print(f"  - {line}")


if __name__ == "__main__":
    main()
