"""The tool executor's decision: which approved calls may run, and how an outcome is recorded."""

from __future__ import annotations

from datetime import datetime

from processors.results import answer
from processors.state import RunState, approval_refusal
from processors.tools.registry import ToolRegistry
from schemas.events import Event, RequestRetried, ToolApproved, ToolExecuted

__all__ = ["refusal", "execution_result", "ACTOR"]

ACTOR = "tool_executor"


def refusal(state: RunState | None, approved: Event, *, registry: ToolRegistry) -> str | None:
    """Why `approved` must not run, or None.

    `state` is the run folded from the log up to the event that asks for the call: up to,
    not including, the ToolApproved itself; or up to and including a RequestRetried that asks
    for it again. A call runs only when the log shows what approved it (`approval_refusal`):
    the guard's answer to the very proposal it names, or a person's grant of the very call
    that was parked.
    """
    p = approved.payload
    if not isinstance(p, ToolApproved):
        return f"{approved.event_type} is not an approval"
    if state is None:
        return f"run {approved.run_id} has no events before this approval"
    last = state.last
    asked = state.open_requests.get(approved.event_id)
    retry = (last is not None and isinstance(last.payload, RequestRetried)
             and last.payload.request_id == approved.event_id)
    if retry and (asked is None or asked.event != approved):
        return "the retried approval is not the one the log holds open"
    if not retry and approved.seq != state.seq + 1:
        return f"seq {approved.seq} does not follow the run's last seq {state.seq}"
    if registry.get(p.tool) is None:
        return f"tool {p.tool!r} is not registered"
    if p.idempotency_key != f"{approved.run_id}/{p.step_id}":
        return f"idempotency key {p.idempotency_key!r} does not name step {p.step_id} of the run"
    return asked.refusal if retry and asked is not None else approval_refusal(state, approved)


def execution_result(approved: Event, *, status: str, output_json: str | None,
                     error: str | None, duration_ms: int, cost_usd: float,
                     now: datetime) -> Event:
    """ToolExecuted for one approved call; a failed call still costs what it cost."""
    p = approved.payload
    assert isinstance(p, ToolApproved)
    result = ToolExecuted(step_id=p.step_id, tool=p.tool, status=status, output_json=output_json,
                          error=error, duration_ms=duration_ms, cost_usd=cost_usd)
    return answer(approved, result, actor=ACTOR, now=now)
