"""Per-tool call budgets: the guard refuses a call past a budget (an observation, the run goes
on), fails closed when the tenant's count is unknown, and policies can count calls themselves."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from policies import parse_policy
from processors.guard import decide_call
from processors.tool_budgets import BUDGET_RULE, ToolUsage, budget_refusal, run_calls_of
from processors.tools.registry import default_registry
from processors.tools.tools_file import ToolsFileError, parse_tools
from schemas.events import ApprovalRequested, ToolApproved, ToolRejected
from tests.factories import T0
from tests.harness import Run, executed, plan

REGISTRY = default_registry()
SEARCH = REGISTRY.get("search_docs")
assert SEARCH is not None
POLICY = parse_policy("version: 1\ndefault: allow\nrules: []\n", registry=REGISTRY)


def guard(r: Run, spec, *, tenant_calls: int | None = 0, policy=POLICY):
    """The guard's answer to the run's last proposal, counting as the guard service does."""
    proposed = r.last("ToolProposed")
    usage = ToolUsage(run_calls=run_calls_of(r.log, proposed.payload.tool), tenant_calls=tenant_calls)
    return decide_call(proposed, policy=policy, now=T0, approval_ttl=timedelta(hours=1), spec=spec,
                       usage=usage)


def test_a_call_past_the_run_budget_is_refused_as_an_observation_and_the_run_goes_on() -> None:
    spec = dataclasses.replace(SEARCH, run_call_budget=2)
    r = Run()
    r.request()
    r.reply("RunStarted", plan(*[("search_docs", {"query": f"refund {i}"}) for i in range(3)]))
    for step in ("s1", "s2"):
        decision = guard(r, spec)
        assert isinstance(decision.payload, ToolApproved)
        r.send(decision)
        r.reply("ToolApproved", executed("search_docs", {"hits": []}, step=step))
    third = guard(r, spec)
    assert isinstance(third.payload, ToolRejected) and third.payload.rule == BUDGET_RULE
    assert "2 of 2" in third.payload.reason
    r.send(third)
    obs = r.last("ObservationCaptured").payload
    assert obs.status == "denied" and "budget per run is exhausted" in obs.summary
    assert r.types()[-1] == "ResponseRequested"  # the run answers from what it did


def test_the_tenant_budget_counts_today_and_fails_closed_when_the_store_cannot_say() -> None:
    spec = dataclasses.replace(SEARCH, tenant_call_budget=100)
    assert budget_refusal(spec, ToolUsage(run_calls=0, tenant_calls=99)) is None
    assert "per tenant and day is exhausted: 100 of 100" in (
        budget_refusal(spec, ToolUsage(run_calls=0, tenant_calls=100)) or "")
    assert "cannot be checked" in (budget_refusal(spec, ToolUsage(run_calls=0, tenant_calls=None)) or "")
    # No budget, no limit.
    assert budget_refusal(SEARCH, ToolUsage(run_calls=10**6, tenant_calls=None)) is None


def test_a_policy_can_count_calls_of_the_tool_before_its_budget_runs_out() -> None:
    policy = parse_policy("""
version: 1
default: allow
rules:
  - name: second_search_needs_a_person
    when: {tool: search_docs, run_metrics: {tool_run_calls_gte: 2}}
    action: require_human_approval
  - name: busy_tenant
    when: {tool: search_docs, run_metrics: {tool_tenant_calls_gt: 500}}
    action: deny
""", registry=REGISTRY)
    assert policy.counts_tool_usage("search_docs") and not policy.counts_tool_usage("query_sql")
    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "a"}), ("search_docs", {"query": "b"})))
    first = guard(r, SEARCH, policy=policy)
    assert isinstance(first.payload, ToolApproved)
    r.send(first)
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    second = guard(r, SEARCH, policy=policy)
    assert isinstance(second.payload, ApprovalRequested)
    assert second.payload.rule == "second_search_needs_a_person"
    # Without the counts (none supplied) the metrics are unknown: restrictive rules apply.
    blind = decide_call(r.last("ToolProposed"), policy=policy, now=T0, approval_ttl=timedelta(hours=1))
    assert isinstance(blind.payload, ToolRejected) and blind.payload.rule == "busy_tenant"


def test_the_tools_file_sets_budgets_and_adds_entry_point_tools() -> None:
    registry = parse_tools({"tools": {
        "send_email": {"run_call_budget": 1, "tenant_call_budget": 50},
        "word_count": {"description": "Counts words.", "entrypoint": "mytools.text:word_count",
                       "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
                       "cost_usd": 0.0001},
    }})
    email, words = registry.get("send_email"), registry.get("word_count")
    assert email is not None and email.network
    assert email.run_call_budget == 1 and email.tenant_call_budget == 50
    assert words is not None and words.entrypoint == "mytools.text:word_count" and not words.network
    assert words.input_errors({"text": 3}) and set(registry.names()) >= {"search_docs", "word_count"}
    with pytest.raises(ToolsFileError, match="built-in tool takes only"):
        parse_tools({"tools": {"send_email": {"input_schema": {}}}})
    with pytest.raises(ToolsFileError, match="entrypoint"):
        parse_tools({"tools": {"mine": {"description": "no code"}}})
    with pytest.raises(ToolsFileError, match="run_call_budget"):
        parse_tools({"tools": {"query_sql": {"run_call_budget": -1}}})
