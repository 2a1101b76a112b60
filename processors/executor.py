"""The tool executor's decision: which approved calls may run, and how an outcome is recorded."""

from __future__ import annotations

from datetime import datetime

from processors.results import answer
from processors.tools.registry import ToolRegistry
from schemas.events import Event, ToolApproved, ToolExecuted

__all__ = ["refusal", "execution_result", "ACTOR"]

ACTOR = "tool_executor"


def refusal(approved: Event, *, registry: ToolRegistry) -> str | None:
    """Why this record must not run, or None. Only ToolApproved events of the log run."""
    p = approved.payload
    if not isinstance(p, ToolApproved) or approved.seq < 1:
        return f"{approved.event_type} (seq {approved.seq}) is not an approval on the log"
    spec = registry.get(p.tool)
    if spec is None:
        return f"tool {p.tool!r} is not registered"
    if p.idempotency_key != f"{approved.run_id}/{p.step_id}":
        return f"idempotency key {p.idempotency_key!r} does not name run {approved.run_id} step {p.step_id}"
    return None


def execution_result(approved: Event, *, status: str, output_json: str | None,
                     error: str | None, duration_ms: int, cost_usd: float,
                     now: datetime) -> Event:
    """ToolExecuted for one approved call; a failed call still costs what it cost."""
    p = approved.payload
    assert isinstance(p, ToolApproved)
    result = ToolExecuted(step_id=p.step_id, tool=p.tool, status=status, output_json=output_json,
                          error=error, duration_ms=duration_ms, cost_usd=cost_usd)
    return answer(approved, result, actor=ACTOR, now=now)
