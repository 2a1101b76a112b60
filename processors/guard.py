"""The policy guard's decision: a proposed call is approved, rejected or parked for a person."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from policies import Policy
from processors.results import answer
from schemas.events import ApprovalRequested, Event, ToolApproved, ToolProposed, ToolRejected

__all__ = ["decide_call", "ACTOR"]

ACTOR = "policy_guard"


def decide_call(proposed: Event, *, policy: Policy, now: datetime,
                approval_ttl: timedelta) -> Event:
    """The guard's answer to one ToolProposed, carrying rule, reason and policy version."""
    p = proposed.payload
    assert isinstance(p, ToolProposed)
    try:
        call_input = json.loads(p.input_json)
    except ValueError:
        call_input = None
    decision = policy.evaluate(
        tool=p.tool, input=call_input if isinstance(call_input, dict) else {"<invalid>": p.input_json},
        run_metrics=p.run_metrics.model_dump(), tenant_id=proposed.tenant_id, route=p.route,
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
