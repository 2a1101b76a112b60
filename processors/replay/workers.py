"""Today's processors, and each worker's decision taken again on a recorded trigger.

Workers decide from data: the planner from a model's output (the recorded one), the guard from
the policy, the executor from the run's history, the responder from the observations. Replay
asks each again with today's code and configuration, and never runs a tool or calls a model:
the recorded ToolExecuted *is* the tool's observation, the recorded ModelCall the model's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from policies import Policy
from processors.executor import refusal
from processors.guard import decide_call
from processors.models import ModelsConfig, RecordedPlanner, final_response, plan_with
from processors.orchestrator import OrchestratorConfig
from processors.responder import draft_response
from processors.state import RunState, evolve
from processors.tools.registry import ToolRegistry
from schemas.events import Event, ResponseFinalized

__all__ = ["Processors", "redecide", "fold_from", "WORKERS"]

WORKERS = {"RunStarted": "planner", "ToolProposed": "policy_guard", "ToolApproved": "tool_executor",
           "ResponseRequested": "responder", "ResponseDrafted": "responder",
           "MemoryRetrieved": "planner", "ResponseFinalized": "memory"}
"""Which worker answers each request the orchestrator appends."""


@dataclass(frozen=True, kw_only=True)
class Processors:
    """The configuration replay decides with: today's, or a candidate's."""

    policy: Policy
    """What the guard enforces."""
    registry: ToolRegistry
    """The tools a plan may use and a call may run."""
    models: ModelsConfig
    """Model prices and each route's models."""
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    """Tool costs the orchestrator checks budgets with."""
    approval_ttl: timedelta = timedelta(days=1)
    """How long a parked call waits (only its expiry time depends on it; not compared)."""


def redecide(recorded: Event, trigger: Event, *, state: RunState | None,
             approved_state: RunState | None, processors: Processors) -> Event | str | None:
    """The answer today's worker gives to `trigger`, to compare with `recorded`.

    state: the run before `recorded` arrived at the orchestrator.
    approved_state: for a ToolExecuted, the run just before its ToolApproved.

    A string is the executor's refusal to run the call; None means there is nothing to decide
    again (the answer is the world's: a tenant's spend, a tool's output, a model's final text).
    """
    kind = trigger.event_type
    now = recorded.event_time
    if recorded.event_type in ("MemoryRetrieved", "MemoryStored"):
        return None  # what the store held or kept then: the world's, fed back as recorded, never read again
    if kind in ("RunStarted", "MemoryRetrieved"):
        if recorded.event_type == "BudgetExceeded":
            return None  # the tenant's spend that day, read from the store: an input, not a rule
        planner = RecordedPlanner({recorded.run_id: [recorded]})
        return plan_with(trigger, planner, config=processors.models, registry=processors.registry,
                         now=lambda: now)
    if kind == "ToolProposed":
        return decide_call(trigger, policy=processors.policy, now=now,
                           approval_ttl=processors.approval_ttl)
    if kind == "ToolApproved":
        return refusal(approved_state, trigger, registry=processors.registry)
    if kind == "ResponseRequested":
        return draft_response(trigger, now=now, stopped=state.stopped if state else None)
    if kind == "ResponseDrafted":
        final = recorded.payload
        if isinstance(final, ResponseFinalized) and final.model_call is not None:
            return None  # a finalizer model wrote it: its text is the recorded output
        sent, _ = final_response(trigger, request_text=state.text if state else "", writer=None,
                                 config=processors.models, now=now)
        return sent
    return None


def fold_from(state: RunState | None, events: Iterable[Event]) -> RunState | None:
    """`state` with `events` folded in: the run as it stood between two of one append's events,
    which `handle` passes through without returning."""
    for e in events:
        state = evolve(state, e)
    return state
