"""Per-tool call budgets: how many calls of a tool a run, and a tenant per UTC day, may make.

The guard checks them before the policy: an exhausted budget is a refusal with rule
`tool_call_budget` (the run sees it as an observation and goes on), never an exception. The
same counts reach the policy as the run metrics `tool_run_calls` and `tool_tenant_calls`, so a
rule can act before a budget runs out (say, ask a person for the last call).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from processors.tools.registry import ToolSpec
from schemas.events import Event, ToolExecuted

__all__ = ["BUDGET_RULE", "ToolUsage", "budget_refusal", "run_calls_of", "usage_metrics"]

BUDGET_RULE = "tool_call_budget"


@dataclass(frozen=True)
class ToolUsage:
    """Calls of one tool made before the proposed one."""

    run_calls: int
    """In this run."""
    tenant_calls: int | None
    """By this tenant since 00:00 UTC; None when the store could not say."""


def run_calls_of(events: Iterable[Event], tool: str) -> int:
    """Calls of `tool` a run's events show executed (whatever their outcome)."""
    return sum(1 for e in events if isinstance(e.payload, ToolExecuted) and e.payload.tool == tool)


def budget_refusal(spec: ToolSpec, usage: ToolUsage) -> str | None:
    """Why the proposed call would exceed one of `spec`'s budgets, or None."""
    if spec.run_call_budget is not None and usage.run_calls >= spec.run_call_budget:
        return (f"{spec.name}'s call budget per run is exhausted: {usage.run_calls} of "
                f"{spec.run_call_budget} call(s) made")
    if spec.tenant_call_budget is not None:
        if usage.tenant_calls is None:
            # Fail closed, as for an unknown run metric: a budget nobody can check is not granted.
            return f"{spec.name}'s call budget per tenant cannot be checked (the store did not answer)"
        if usage.tenant_calls >= spec.tenant_call_budget:
            return (f"{spec.name}'s call budget per tenant and day is exhausted: {usage.tenant_calls} "
                    f"of {spec.tenant_call_budget} call(s) made today")
    return None


def usage_metrics(usage: ToolUsage) -> dict[str, float | None]:
    """The counts as the run metrics policies compare (before this call)."""
    return {"tool_run_calls": float(usage.run_calls),
            "tool_tenant_calls": None if usage.tenant_calls is None else float(usage.tenant_calls)}
