"""What a run came to, in the terms replay results and scores compare: its plan, the policy's
decisions, what each step observed, the answer, the cost and the latency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.state import fold
from schemas.events import Event, ModelCall, PlanGenerated, PlanRejected, ToolExecuted

__all__ = ["ACTION_OF", "summarize", "model_latency_ms"]

ACTION_OF = {"ToolApproved": "allow", "ToolRejected": "deny",
             "ApprovalRequested": "require_human_approval"}
"""The guard's answer to a ToolProposed, by event type, as a policy action."""

_HUMAN = {"ApprovalGranted": "granted", "ApprovalDenied": "denied", "ApprovalExpired": "expired"}


def model_latency_ms(events: Sequence[Event]) -> int:
    """The run's latency as replay can know it: every model call's latency plus every tool
    call's duration. Queueing between processors is not in it, so a recorded run and its
    replay are measured alike."""
    total = 0
    for e in events:
        call: ModelCall | None = getattr(e.payload, "model_call", None)
        if call is not None:
            total += call.latency_ms
        elif isinstance(e.payload, ToolExecuted):
            total += e.payload.duration_ms
    return total


def summarize(events: Sequence[Event]) -> dict[str, Any]:
    """The run's plan, decisions, observations, outcome, answer, cost and latency."""
    state = fold(list(events))
    kinds = {e.event_id: e.event_type for e in events}
    plan: dict[str, Any] | None = None
    decisions: list[dict[str, Any]] = []
    observed: dict[str, str] = {}
    outcome: str | None = None
    for e in events:
        p: Any = e.payload
        if isinstance(p, (PlanGenerated, PlanRejected)) and plan is None:
            plan = {"provider": p.model_call.provider, "model": p.model_call.model,
                    "prompt_version": p.model_call.prompt_version,
                    "cost_usd": p.model_call.cost_usd}
            if isinstance(p, PlanGenerated):
                plan["steps"] = [{"id": s.id, "tool": s.tool, "input_json": s.input_json,
                                  "success_criteria": s.success_criteria} for s in p.steps]
            else:
                plan["errors"] = list(p.errors)
        elif e.event_type in ACTION_OF and kinds.get(e.causation_id or "") == "ToolProposed":
            decisions.append({"step_id": p.step_id, "tool": p.tool, "action": ACTION_OF[e.event_type],
                              "rule": p.rule, "input_json": getattr(p, "input_json", None)})
        elif e.event_type in _HUMAN and decisions:
            decisions[-1]["person"] = _HUMAN[e.event_type]
        elif e.event_type == "ObservationCaptured":
            observed[p.step_id] = p.status
        elif e.event_type == "RunCompleted":
            outcome = p.outcome
        elif e.event_type == "RunFailed":
            outcome = f"failed:{p.stage}"
    if plan is not None and "steps" in plan:
        for step in plan["steps"]:
            step["status"] = observed.get(step["id"])
    proposed = {e.event_id: e.payload for e in events if e.event_type == "ToolProposed"}
    for d in decisions:
        if d["input_json"] is None:  # a rejection names no input; its proposal does
            d["input_json"] = next((getattr(p, "input_json", None) for p in proposed.values()
                                    if getattr(p, "step_id", None) == d["step_id"]), None)
    return {
        "status": state.status if state else "unknown", "outcome": outcome,
        "answer": state.answer if state else None, "plan": plan, "decisions": decisions,
        "cost_usd": state.metrics.cost_usd if state else 0.0,
        "latency_ms": model_latency_ms(events), "events": len(events),
    }
