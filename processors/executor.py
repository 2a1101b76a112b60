"""The tool executor's decision: which approved calls may run, and how an outcome is recorded."""

from __future__ import annotations

from datetime import datetime

from processors.results import answer
from processors.state import RunState
from processors.tools.registry import ToolRegistry
from schemas.events import Event, ToolApproved, ToolExecuted

__all__ = ["refusal", "execution_result", "ACTOR"]

ACTOR = "tool_executor"


def refusal(state: RunState | None, approved: Event, *, registry: ToolRegistry) -> str | None:
    """Why `approved` must not run, or None.

    `state` is the run folded from the log up to (not including) `approved`. A call runs only
    when the log shows what approved it: the guard's answer to the very proposal it names, or
    a person's grant of the very call that was parked, with the same step, tool and input.
    """
    p = approved.payload
    if not isinstance(p, ToolApproved):
        return f"{approved.event_type} is not an approval"
    if state is None:
        return f"run {approved.run_id} has no events before this approval"
    if approved.seq != state.seq + 1:
        return f"seq {approved.seq} does not follow the run's last seq {state.seq}"
    if registry.get(p.tool) is None:
        return f"tool {p.tool!r} is not registered"
    if p.idempotency_key != f"{approved.run_id}/{p.step_id}":
        return f"idempotency key {p.idempotency_key!r} does not name step {p.step_id} of the run"
    call = (p.step_id, p.tool, p.input_json)
    cause = approved.causation_id
    if cause is not None and state.open_requests.get(cause) == "ToolProposed":
        proposal = state.proposed
        if state.proposed_event_id == cause and proposal is not None \
                and (proposal.step_id, proposal.tool, proposal.input_json) == call:
            return None
        return "the approval does not match the call that was proposed"
    last = state.last
    if last is not None and last.event_type == "ApprovalGranted" and last.event_id == cause:
        parked = state.parked
        if parked is not None and (parked.step_id, parked.tool, parked.input_json) == call:
            return None
        return "the approval does not match the call a person approved"
    return "no proposal answered by the guard, nor a person's grant, approves this call"


def execution_result(approved: Event, *, status: str, output_json: str | None,
                     error: str | None, duration_ms: int, cost_usd: float,
                     now: datetime) -> Event:
    """ToolExecuted for one approved call; a failed call still costs what it cost."""
    p = approved.payload
    assert isinstance(p, ToolApproved)
    result = ToolExecuted(step_id=p.step_id, tool=p.tool, status=status, output_json=output_json,
                          error=error, duration_ms=duration_ms, cost_usd=cost_usd)
    return answer(approved, result, actor=ACTOR, now=now)
