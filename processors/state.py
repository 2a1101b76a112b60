"""A run's state, folded from its events: `evolve(state, event) -> state`.

Pure: no clock, no ids, no I/O. The orchestrator, every replay and the tests fold the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from schemas.events import (
    ApprovalRequested,
    BudgetExceeded,
    Event,
    MemoryRetrieved,
    ObservationCaptured,
    PlanGenerated,
    PlanRejected,
    PlanStep,
    RequestRetried,
    ResponseDrafted,
    ResponseFinalized,
    RunMetrics,
    RunStarted,
    ToolApproved,
    ToolExecuted,
    ToolProposed,
)

__all__ = ["RunState", "OpenRequest", "Status", "evolve", "fold", "REQUEST_ANSWERS", "new_run",
           "approval_refusal", "FoldError", "answers_to", "is_memory_request", "MEMORY_ANSWER"]

# A request event the orchestrator appends, and the result types a worker may answer it with.
REQUEST_ANSWERS: Mapping[str, frozenset[str]] = MappingProxyType({
    # A planner may also refuse to spend: the tenant's daily budget is used up. A memory run's
    # RunStarted is the memory service's to answer first (see `answers_to`).
    "RunStarted": frozenset({"PlanGenerated", "PlanRejected", "BudgetExceeded", "MemoryRetrieved"}),
    "MemoryRetrieved": frozenset({"PlanGenerated", "PlanRejected", "BudgetExceeded"}),
    "ToolProposed": frozenset({"ToolApproved", "ToolRejected", "ApprovalRequested"}),
    "ToolApproved": frozenset({"ToolExecuted"}),
    "ResponseRequested": frozenset({"ResponseDrafted"}),
    # The draft goes to the finalizer (a stronger model, or a pass-through).
    "ResponseDrafted": frozenset({"ResponseFinalized"}),
    # Only a memory run that will complete asks the memory service to keep what it learnt.
    "ResponseFinalized": frozenset({"MemoryStored"}),
})

MEMORY_ANSWER: Mapping[str, str] = MappingProxyType({"RunStarted": "MemoryRetrieved",
                                                     "ResponseFinalized": "MemoryStored"})
"""A memory request's kind, and the one answer it takes (from the memory service, or from the
orchestrator itself when that answer does not come in time)."""

_ANSWERS = frozenset().union(*REQUEST_ANSWERS.values())

_STATUS_AFTER = {
    "ApprovalRequested": "awaiting_approval",
    "ApprovalGranted": "running",
    "ApprovalDenied": "running",
    "ApprovalExpired": "running",
    "RunCompleted": "completed",
    "RunFailed": "failed",
    "RunCancelled": "cancelled",
}


class FoldError(ValueError):
    """An event that cannot be the next one of its run (another run's, out of order, after the
    end, or a run that does not begin with RunStarted): the edge parks it, nothing crashes."""


class Status:
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """A request the orchestrator appended that no worker has answered yet."""

    event: Event
    asked_at: datetime
    """When the current attempt was asked (the request, or its latest retry)."""
    attempt: int = 1
    timeout_s: float | None = None
    """How long the current attempt is given; None until a retry states it (the config's)."""
    refusal: str | None = None
    """For a ToolApproved: why the log does not back it (None when it does)."""

    @property
    def kind(self) -> str:
        return self.event.event_type


def is_memory_request(request: Event) -> bool:
    """Whether `request` is put to the memory service (a memory run's RunStarted or ResponseFinalized)."""
    p = request.payload
    return request.event_type == "ResponseFinalized" or (isinstance(p, RunStarted) and p.memory)


def answers_to(request: Event) -> frozenset[str]:
    """The result types that may answer `request`: a memory run's RunStarted is answered by the
    memory service only, any other RunStarted by the planner only."""
    kind = request.event_type
    if kind == "RunStarted":
        memory = MEMORY_ANSWER[kind]
        return frozenset({memory}) if is_memory_request(request) else REQUEST_ANSWERS[kind] - {memory}
    return REQUEST_ANSWERS.get(kind, frozenset())


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
    open_requests: Mapping[str, OpenRequest] = field(default_factory=dict)
    """event_id -> the requests still waiting for their worker's answer."""
    proposed: ToolProposed | None = None
    """The last call put to the guard, and its event id: what an approval must match."""
    proposed_event_id: str | None = None
    parked: ApprovalRequested | None = None
    parked_event_id: str | None = None
    parked_at: datetime | None = None
    """When the parked call began to wait for a person."""
    observations: tuple[ObservationCaptured, ...] = ()
    metrics: RunMetrics = _NO_METRICS
    answer: str | None = None
    failure: str | None = None
    """Why the run cannot succeed (a rejected plan, no budget to plan), decided early."""
    stopped: str | None = None
    """Why the run stopped before its plan was done (a budget), for the answer and outcome."""
    active_s: float = 0.0
    """Seconds the run worked before its current stretch (waits for a person not counted)."""
    active_since: datetime | None = None
    """When the current stretch of work began; None while the run waits for a person."""
    traceparent: str | None = None
    """The W3C trace context of the run's root span (from RunStarted)."""
    memory: bool = False
    """The tenant had opted in to long-term memory when the run was requested."""
    memory_subject: str | None = None
    memories: tuple[str, ...] = ()
    """The redacted texts of the memories the run was given (MemoryRetrieved)."""

    def active_at(self, now: datetime) -> float:
        """Seconds the run has worked by `now`, not counting waits for a person."""
        since = self.active_since
        return self.active_s + (max((now - since).total_seconds(), 0.0) if since else 0.0)

    @property
    def terminal(self) -> bool:
        return self.status in Status.TERMINAL


def new_run(event: Event) -> RunState:
    """The state right after a run's first event (RunStarted)."""
    p = event.payload
    if not isinstance(p, RunStarted):
        raise FoldError(f"run {event.run_id} begins with {event.event_type} (seq {event.seq}), "
                        "not RunStarted")
    return RunState(
        run_id=event.run_id, tenant_id=event.tenant_id, route=p.route, text=p.text,
        idempotency_key=p.idempotency_key, started_at=event.event_time,
        active_since=event.event_time, traceparent=p.traceparent, memory=p.memory,
        memory_subject=p.memory_subject,
    )


def approval_refusal(state: RunState | None, approved: Event) -> str | None:
    """Why the log up to (not including) `approved` does not back it, or None.

    A call is backed by the guard's answer to the very proposal it names, or by a person's
    grant of the very call that was parked, with the same step, tool and input.
    """
    p = approved.payload
    if not isinstance(p, ToolApproved):
        return f"{approved.event_type} is not an approval"
    if state is None:
        return f"run {approved.run_id} has no events before this approval"
    call = (p.step_id, p.tool, p.input_json)
    cause = approved.causation_id
    asked = state.open_requests.get(cause or "")
    if asked is not None and asked.kind == "ToolProposed":
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
    """The state after `event`. `state` is None only before a run's RunStarted.

    Like an aggregate's `mutate`, it checks that `event` belongs here: the same run, exactly the
    next seq, the run not ended; otherwise `FoldError`.
    """
    if state is None:
        state = new_run(event)
        if event.seq != 1:
            raise FoldError(f"run {event.run_id} begins at seq {event.seq}, not 1")
    elif event.run_id != state.run_id:
        raise FoldError(f"event of run {event.run_id} folded into run {state.run_id}")
    elif state.terminal:
        raise FoldError(f"{event.event_type} (seq {event.seq}) after run {state.run_id} ended "
                        f"({state.status})")
    elif event.seq != state.seq + 1:
        raise FoldError(f"{event.event_type} of run {state.run_id} has seq {event.seq}, "
                        f"but the next is {state.seq + 1}")
    p = event.payload
    kind = event.event_type
    changes: dict[str, Any] = {"seq": event.seq, "last": event}
    open_requests = dict(state.open_requests)
    if kind in _ANSWERS and event.causation_id is not None:
        open_requests.pop(event.causation_id, None)
    if kind in REQUEST_ANSWERS and _asks(state, event):
        refusal = approval_refusal(state, event) if kind == "ToolApproved" else None
        open_requests[event.event_id] = OpenRequest(event, event.event_time, refusal=refusal)
    if kind in _STATUS_AFTER:
        changes["status"] = _STATUS_AFTER[kind]
    if kind == "PlanGenerated":
        assert isinstance(p, PlanGenerated)
        changes.update(steps=tuple(p.steps), budget_usd=p.budget_usd, step_index=0,
                       metrics=_add_cost(state.metrics, p.model_call.cost_usd))
    elif kind == "PlanRejected":
        assert isinstance(p, PlanRejected)
        changes.update(failure="plan rejected: " + "; ".join(p.errors),
                       metrics=_add_cost(state.metrics, p.model_call.cost_usd))
    elif kind == "ToolProposed":
        changes.update(proposed=p, proposed_event_id=event.event_id)
    elif kind == "ApprovalRequested":
        changes.update(parked=p, parked_event_id=event.event_id, parked_at=event.event_time,
                       active_since=None, active_s=state.active_at(event.event_time))
    elif kind in ("ApprovalGranted", "ApprovalDenied", "ApprovalExpired"):
        changes["active_since"] = event.event_time
    elif kind == "RequestRetried":
        assert isinstance(p, RequestRetried)
        asked = open_requests.get(p.request_id)
        if asked is not None:
            open_requests[p.request_id] = replace(asked, asked_at=event.event_time,
                                                  attempt=p.attempt, timeout_s=p.timeout_s)
    elif kind in ("ToolApproved", "ToolRejected"):
        # Kept through the human decision so the follow-up can restate the parked call.
        changes.update(parked=None, parked_event_id=None, parked_at=None)
    elif kind == "ToolExecuted":
        assert isinstance(p, ToolExecuted)
        changes["metrics"] = _metrics_after(state.metrics, p)
    elif kind == "ObservationCaptured":
        assert isinstance(p, ObservationCaptured)
        changes.update(observations=(*state.observations, p), step_index=state.step_index + 1)
    elif kind == "BudgetExceeded":
        assert isinstance(p, BudgetExceeded)
        reason = f"{p.limit} exceeded: {p.reason}"
        changes["stopped"] = reason
        if not state.steps:
            changes["failure"] = reason
    elif kind == "ResponseDrafted":
        assert isinstance(p, ResponseDrafted)
        changes["metrics"] = _add_cost(state.metrics, p.model_call.cost_usd)
    elif kind == "MemoryRetrieved":
        assert isinstance(p, MemoryRetrieved)
        changes["memories"] = tuple(m.text for m in p.memories)
    elif kind == "ResponseFinalized":
        assert isinstance(p, ResponseFinalized)
        changes["answer"] = p.text
        if p.model_call is not None:
            changes["metrics"] = _add_cost(state.metrics, p.model_call.cost_usd)
    if kind in ("RunCompleted", "RunFailed", "RunCancelled"):
        open_requests.clear()
        changes.update(parked=None, parked_event_id=None, parked_at=None, active_since=None,
                       active_s=state.active_at(event.event_time))
    changes["open_requests"] = open_requests
    return replace(state, **changes)


def _asks(state: RunState, event: Event) -> bool:
    """Whether `event` waits for a worker's answer: a ResponseFinalized only in a memory run
    that will complete (a failed run leaves no memory, and ends at once)."""
    if event.event_type == "ResponseFinalized":
        return state.memory and state.failure is None
    return True


def fold(events: list[Event]) -> RunState | None:
    """The state after all of a run's events, in seq order."""
    state: RunState | None = None
    for event in events:
        state = evolve(state, event)
    return state
