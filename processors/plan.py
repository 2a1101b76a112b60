"""The plan contract: what a planner must return before any tool runs.

A plan is checked twice: the pydantic model fixes its shape (strict, so a model that writes
`"maxSteps": "3"` is refused rather than coerced), then `validate_plan` checks what the shape
cannot: registered tools, their input schemas, the step bound, the budget and the run id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from processors.tools.registry import ToolRegistry

__all__ = ["AgentPlan", "PlanStep", "PlanValidation", "plan_to_json", "validate_plan"]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

# Sums of float costs carry rounding noise; a plan exactly at its budget must still pass.
_BUDGET_EPSILON = 1e-9


class PlanStep(BaseModel):
    """One tool call the planner intends to make."""

    model_config = _STRICT

    id: str = Field(min_length=1)
    """Unique within the plan; the executor keys idempotency on `run_id`/`id`."""
    objective: str = Field(min_length=5)
    """Why the step exists, in words a reviewer can read."""
    tool: str
    """Exact name of a registered tool."""
    input: dict[str, Any]
    """The tool's input, valid against its JSON schema."""
    successCriteria: str = Field(min_length=5)
    """How to tell the step did what it was for."""


class AgentPlan(BaseModel):
    """The planner's whole output for one run."""

    model_config = _STRICT

    runId: str = Field(min_length=8)
    """The run the plan belongs to."""
    maxSteps: int = Field(ge=1, le=20)
    """Upper bound on steps the run may execute."""
    budgetUsd: float = Field(ge=0.01, le=10)
    """Upper bound on the estimated tool cost of the run."""
    steps: list[PlanStep] = Field(min_length=1)
    """Tool calls in execution order."""
    stopConditions: list[str] = Field(min_length=1)
    """When the run should stop, in plain words."""


@dataclass(frozen=True)
class PlanValidation:
    """The outcome of `validate_plan`: a plan, or the reasons there is none."""

    plan: AgentPlan | None
    """The validated plan; None whenever `errors` is not empty, so nobody runs a bad plan."""
    errors: list[str] = field(default_factory=list)
    """Human-readable problems, each prefixed with where it is (`steps[1].input: …`)."""

    @property
    def valid(self) -> bool:
        """True when the plan passed every check."""
        return not self.errors


def validate_plan(
    raw: str | bytes | Mapping[str, Any],
    *,
    registry: ToolRegistry,
    run_id: str | None = None,
) -> PlanValidation:
    """Check a planner's output (JSON text or a decoded object) against the whole contract."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            return PlanValidation(None, [f"<plan>: not valid JSON ({exc})"])
    try:
        plan = AgentPlan.model_validate(raw)
    except ValidationError as exc:
        return PlanValidation(None, [_format_pydantic(e) for e in exc.errors()])
    errors = _contract_errors(plan, registry=registry, run_id=run_id)
    return PlanValidation(None if errors else plan, errors)


def plan_to_json(plan: AgentPlan) -> str:
    """The plan as compact JSON with sorted keys, byte-identical for equal plans."""
    return json.dumps(
        plan.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _contract_errors(
    plan: AgentPlan, *, registry: ToolRegistry, run_id: str | None
) -> list[str]:
    errors: list[str] = []
    if run_id is not None and plan.runId != run_id:
        errors.append(f"runId: {plan.runId!r} is not this run's id {run_id!r}")
    if len(plan.steps) > plan.maxSteps:
        errors.append(f"steps: {len(plan.steps)} steps exceed maxSteps {plan.maxSteps}")
    first_use: dict[str, int] = {}
    costs: list[float] = []
    for i, step in enumerate(plan.steps):
        where = f"steps[{i}]"
        if step.id in first_use:
            first = first_use[step.id]
            errors.append(f"{where}.id: duplicate step id {step.id!r} (also steps[{first}])")
        first_use.setdefault(step.id, i)
        spec = registry.get(step.tool)
        if spec is None:
            known = ", ".join(registry.names())
            errors.append(f"{where}.tool: {step.tool!r} is not a registered tool (known: {known})")
            continue
        costs.append(spec.cost_usd)
        errors.extend(f"{where}.input{_input_location(e)}" for e in spec.input_errors(step.input))
    cost = math.fsum(costs)
    if cost > plan.budgetUsd + _BUDGET_EPSILON:
        errors.append(
            f"budgetUsd: estimated cost ${cost:.4f} exceeds the budget ${plan.budgetUsd:.4f}"
        )
    return errors


def _input_location(error: str) -> str:
    # ToolSpec.input_errors speaks JSON-pointer-ish `to/0: msg`; plans speak `input.to[0]: msg`.
    path, _, message = error.partition(": ")
    if path == "<input>":
        return f": {message}"
    parts = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("/"))
    return f"{parts}: {message}"


def _format_pydantic(error: Mapping[str, Any]) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    return f"{loc or '<plan>'}: {error['msg']}"


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN/Infinity, which no JSON producer should send; refuse them up front.
    raise ValueError(f"{name} is not a JSON number")
