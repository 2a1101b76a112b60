"""A run's state, folded from its events: `evolve(state, event) -> state`.

Pure: no clock, no ids, no I/O. The orchestrator, every replay and the tests fold the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from collections.abc import Mapping

from schemas.events import (
    ApprovalRequested, Event, ObservationCaptured, PlanGenerated, PlanStep, RunMetrics,
    RunStarted, ToolExecuted, ToolProposed,
)

__all__ = ["RunState", "Status", "evolve", "fold", "REQUEST_ANSWERS", "new_run"]

# A request event the orchestrator appends, and the result types a worker may answer it with.
REQUEST_ANSWERS: Mapping[str, frozenset[str]] = MappingProxyType({
    # A planner may also refuse to spend: the tenant's daily budget is used up.
    "RunStarted": frozenset({"PlanGenerated", "PlanRejected", "BudgetExceeded"}),
    "ToolProposed": frozenset({"ToolApproved", "ToolRejected", "ApprovalRequested"}),
    "ToolApproved": frozenset({"ToolExecuted"}),
    "ResponseRequested": frozenset({"ResponseDrafted"}),
    # The draft goes to the finalizer (a stronger model, or a pass-through).
    "ResponseDrafted": frozenset({"ResponseFinalized"}),
})

_STATUS_AFTER = {
    "ApprovalRequested": "awaiting_approval",
    "ApprovalGranted": "running",
    "ApprovalDenied": "running",
    "ApprovalExpired": "running",
    "RunCompleted": "completed",
    "RunFailed": "failed",
    "RunCancelled": "cancelled",
}


class Status:
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


_NO_METRICS = RunMetrics(tool_calls=0, tickets_created=0, emails_sent=0, cost_usd=0.0)


@dataclass(frozen=True, slots=True)
class RunState:
    """Everything the orchestrator needs to decide a run's next event."""

    run_id: str
    tenant_id: str
    route: str
    text: str
    idempotency_key: str
    started_at: datetime
    seq: int = 0
    status: str = Status.RUNNING
    last: Event | None = None
    """The last event appended: what the orchestrator reacts to next."""
    steps: tuple[PlanStep, ...] = ()
    budget_usd: float = 0.0
    step_index: int = 0
    """Index in `steps` of the step in flight (== len(steps) once all have run)."""
    open_requests: Mapping[str, str] = field(default_factory=dict)
    """event_id -> event_type of requests still waiting for their worker's answer."""
    proposed: ToolProposed | None = None
    """The last call put to the guard, and its event id: what an approval must match."""
    proposed_event_id: str | None = None
    parked: ApprovalRequested | None = None
    parked_event_id: str | None = None
    observations: tuple[ObservationCaptured, ...] = ()
    metrics: RunMetrics = _NO_METRICS
    answer: str | None = None
    failure: str | None = None
    """Why the run cannot succeed (a rejected plan, no budget to plan), decided early."""
    stopped: str | None = None
    """Why the run stopped before its plan was done (a budget), for the answer and outcome."""

    @property
    def terminal(self) -> bool:
        return self.status in Status.TERMINAL


def new_run(event: Event) -> RunState:
    """The state right after a run's first event (RunStarted)."""
    p = event.payload
    assert isinstance(p, RunStarted), "a run starts with RunStarted"
    return RunState(
        run_id=event.run_id, tenant_id=event.tenant_id, route=p.route, text=p.text,
        idempotency_key=p.idempotency_key, started_at=event.event_time,
    )


def _metrics_after(m: RunMetrics, p: ToolExecuted) -> RunMetrics:
    ok = p.status == "ok"
    return RunMetrics(
        tool_calls=m.tool_calls + 1,
        tickets_created=m.tickets_created + (ok and p.tool == "create_ticket"),
        emails_sent=m.emails_sent + (ok and p.tool == "send_email"),
        cost_usd=round(m.cost_usd + p.cost_usd, 6),
    )


def _add_cost(m: RunMetrics, cost: float) -> RunMetrics:
    return m.model_copy(update={"cost_usd": round(m.cost_usd + cost, 6)})


def evolve(state: RunState | None, event: Event) -> RunState:
    """The state after `event`. `state` is None only before a run's RunStarted."""
    if state is None:
        state = new_run(event)
    p = event.payload
    kind = event.event_type
    changes: dict[str, object] = {"seq": event.seq, "last": event}
    open_requests = dict(state.open_requests)
    if event.causation_id is not None:
        open_requests.pop(event.causation_id, None)
    if kind in REQUEST_ANSWERS:
        open_requests[event.event_id] = kind
    if kind in _STATUS_AFTER:
        changes["status"] = _STATUS_AFTER[kind]
    if kind == "PlanGenerated":
        assert isinstance(p, PlanGenerated)
        changes.update(steps=tuple(p.steps), budget_usd=p.budget_usd, step_index=0,
                       metrics=_add_cost(state.metrics, p.model_call.cost_usd))
    elif kind == "PlanRejected":
        changes.update(failure="plan rejected: " + "; ".join(p.errors),  # type: ignore[union-attr]
                       metrics=_add_cost(state.metrics, p.model_call.cost_usd))  # type: ignore[union-attr]
    elif kind == "ToolProposed":
        changes.update(proposed=p, proposed_event_id=event.event_id)
    elif kind == "ApprovalRequested":
        changes.update(parked=p, parked_event_id=event.event_id)
    elif kind in ("ToolApproved", "ToolRejected"):
        # Kept through the human decision so the follow-up can restate the parked call.
        changes.update(parked=None, parked_event_id=None)
    elif kind == "ToolExecuted":
        assert isinstance(p, ToolExecuted)
        changes["metrics"] = _metrics_after(state.metrics, p)
    elif kind == "ObservationCaptured":
        assert isinstance(p, ObservationCaptured)
        changes.update(observations=state.observations + (p,), step_index=state.step_index + 1)
    elif kind == "BudgetExceeded":
        reason = f"{p.limit} exceeded: {p.reason}"  # type: ignore[union-attr]
        changes["stopped"] = reason
        if not state.steps:
            changes["failure"] = reason
    elif kind == "ResponseDrafted":
        changes["metrics"] = _add_cost(state.metrics, p.model_call.cost_usd)  # type: ignore[union-attr]
    elif kind == "ResponseFinalized":
        changes["answer"] = p.text  # type: ignore[union-attr]
        if p.model_call is not None:  # type: ignore[union-attr]
            changes["metrics"] = _add_cost(state.metrics, p.model_call.cost_usd)  # type: ignore[union-attr]
    if kind in ("RunCompleted", "RunFailed", "RunCancelled"):
        open_requests.clear()
        changes.update(parked=None, parked_event_id=None)
    changes["open_requests"] = open_requests
    return replace(state, **changes)  # type: ignore[arg-type]


def fold(events: list[Event]) -> RunState | None:
    """The state after all of a run's events, in seq order."""
    state: RunState | None = None
    for event in events:
        state = evolve(state, event)
    return state
