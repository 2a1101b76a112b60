"""The policy guard's decision: a proposed call is approved, rejected or parked for a person."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from policies import Policy
from processors.results import answer
from processors.tool_budgets import BUDGET_RULE, ToolUsage, budget_refusal, usage_metrics
from processors.tools.registry import ToolSpec
from schemas.events import ApprovalRequested, Event, ToolApproved, ToolProposed, ToolRejected

__all__ = ["decide_call", "ACTOR"]

ACTOR = "policy_guard"


def decide_call(proposed: Event, *, policy: Policy, now: datetime,
                approval_ttl: timedelta, spec: ToolSpec | None = None,
                usage: ToolUsage | None = None) -> Event:
    """The guard's answer to one ToolProposed, carrying rule, reason and policy version.

    spec: the tool's registration, whose call budgets are checked before the policy.
    usage: calls of the tool so far (this run, this tenant today); the policy sees them as
        `tool_run_calls` and `tool_tenant_calls`, and they are unknown without it.
    """
    p = proposed.payload
    assert isinstance(p, ToolProposed)
    refused = budget_refusal(spec, usage) if spec is not None and usage is not None else None
    if refused is not None:
        rejected = ToolRejected(step_id=p.step_id, tool=p.tool, rule=BUDGET_RULE, reason=refused,
                                policy_version=policy.version)
        return answer(proposed, rejected, actor=ACTOR, now=now)
    metrics: dict[str, float | None] = {**p.run_metrics.model_dump()}
    if usage is not None:
        metrics.update(usage_metrics(usage))
    try:
        call_input = json.loads(p.input_json)
    except ValueError:
        call_input = None
    decision = policy.evaluate(
        tool=p.tool, input=call_input if isinstance(call_input, dict) else {"<invalid>": p.input_json},
        run_metrics=metrics, tenant_id=proposed.tenant_id, route=p.route,
    )
    common = {"step_id": p.step_id, "tool": p.tool, "rule": decision.rule, "reason": decision.reason,
              "policy_version": decision.policy_version}
    if decision.action == "allow":
        payload: ToolApproved | ToolRejected | ApprovalRequested = ToolApproved(
            input_json=p.input_json, idempotency_key=p.idempotency_key, **common)
    elif decision.action == "require_human_approval":
        payload = ApprovalRequested(input_json=p.input_json, expires_at=now + approval_ttl, **common)
    else:
        payload = ToolRejected(**common)
    return answer(proposed, payload, actor=ACTOR, now=now)
