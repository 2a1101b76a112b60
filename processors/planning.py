"""The planner's decision: a model's raw plan becomes PlanGenerated, or PlanRejected."""

from __future__ import annotations

import json
from datetime import datetime

from processors.plan import plan_to_json, validate_plan
from processors.results import answer
from processors.tools.registry import ToolRegistry
from schemas.events import (
    Event,
    MemoryRetrieved,
    ModelCall,
    PlanGenerated,
    PlanRejected,
    PlanStep,
    RunStarted,
)

__all__ = ["plan_result", "ACTOR"]

ACTOR = "planner"


def plan_result(started: Event, raw: str, *, model_call: ModelCall, registry: ToolRegistry,
                now: datetime) -> Event:
    """Validate `raw` (the model's output for `started`) and record the call either way."""
    assert isinstance(started.payload, RunStarted | MemoryRetrieved)
    checked = validate_plan(raw, registry=registry, run_id=started.run_id)
    if checked.plan is None or checked.errors:
        rejected = PlanRejected(errors=list(checked.errors), raw_output=raw, model_call=model_call)
        return answer(started, rejected, actor=ACTOR, now=now)
    plan = checked.plan
    steps = [
        PlanStep(id=s.id, objective=s.objective, tool=s.tool,
                 input_json=json.dumps(s.input, sort_keys=True), success_criteria=s.successCriteria)
        for s in plan.steps
    ]
    generated = PlanGenerated(
        max_steps=plan.maxSteps, budget_usd=float(plan.budgetUsd), steps=steps,
        stop_conditions=list(plan.stopConditions),
        plan_json=plan_to_json(plan), model_call=model_call,
    )
    return answer(started, generated, actor=ACTOR, now=now)
