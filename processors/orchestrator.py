"""The orchestrator's decisions: which events an inbox record appends to its run.

`handle(state, record, now=…)` is pure. The service in `streams/` feeds it inbox records,
appends what it returns in one Kafka transaction, and keeps the returned state.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from processors.observations import summarize
from processors.state import (
    MEMORY_ANSWER,
    OpenRequest,
    RunState,
    Status,
    answers_to,
    evolve,
    is_memory_request,
)
from schemas.events import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetExceeded,
    Event,
    MemoryRetrieved,
    MemoryStored,
    ObservationCaptured,
    Record,
    RequestRetried,
    ResponseFinalized,
    ResponseRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    RunTimedOut,
    StepTimedOut,
    ToolApproved,
    ToolExecuted,
    ToolProposed,
    ToolRejected,
)

__all__ = ["Outcome", "OrchestratorConfig", "Timeouts", "handle", "event_id_for", "due_timers",
           "run_outcome", "ACTOR"]

ACTOR = "orchestrator"
_ID_NAMESPACE = uuid.UUID("6f1c1f1e-4a8b-4e0e-9a57-2a6b8f0c9d10")

NO_BUDGET_ANSWER = "Nothing was done: the budget for this work is used up. ({reason})"
FALLBACK_ANSWER = (
    "I could not make a safe plan for this request, so no tool was run. "
    "Please rephrase it or ask a person for help. ({reason})"
)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """How long workers get to answer, how often they are asked, how long a run may work."""

    step_s: float = 30.0
    """Time to answer a request's first attempt (a tool call gets its own timeout on top)."""
    attempts: int = 3
    """Attempts per request, the first included; then the run fails."""
    backoff: float = 2.0
    """Each retry gets `backoff` times the previous attempt's time."""
    run_s: float = 600.0
    """Time a run may work in all, waits for a person not counted; 0 for no limit."""


@dataclass(frozen=True, kw_only=True)
class OrchestratorConfig:
    tool_costs: Mapping[str, float] = field(default_factory=dict)
    """Estimated cost per call of each tool, checked against the run's budget before a call."""
    tool_timeouts: Mapping[str, float] = field(default_factory=dict)
    """Each tool's own time limit, added to the time its call's request is given."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    memory_timeout_s: float = 2.0
    """Time the memory service gets to retrieve or store; then the run goes on without it (no retry)."""

    def attempt_timeout(self, asked: OpenRequest) -> float:
        """Seconds the current attempt of `asked` is given: what its retry stated, or for the
        first attempt the step's time (plus the tool's own for a tool call); a memory request
        gets the memory service's short limit."""
        if asked.timeout_s is not None:
            return asked.timeout_s
        if is_memory_request(asked.event):
            return self.memory_timeout_s
        p = asked.event.payload
        tool_s = self.tool_timeouts.get(p.tool, 0.0) if isinstance(p, ToolApproved) else 0.0
        return self.timeouts.step_s + tool_s


@dataclass(frozen=True)
class Outcome:
    """What one inbox record did to its run."""

    events: tuple[Event, ...]
    state: RunState | None
    dropped: str | None = None
    """Why the record appended nothing (a duplicate, a late result), for the logs."""
    invalid: bool = False
    """True when the record cannot apply to any run: it belongs on the dead-letter topic."""


def event_id_for(run_id: str, seq: int) -> str:
    """Event ids follow from (run, seq), so deciding again yields the same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{run_id}/{seq}"))


_Draft = tuple[Record, str, "str | None"]  # payload, actor, causation_id


def handle(state: RunState | None, record: Event, *, now: datetime,
           config: OrchestratorConfig = OrchestratorConfig()) -> Outcome:
    """Apply one inbox record: accept it (or drop it), then append every follow-up."""
    drafts, reason, invalid = _accept(state, record, now)
    if not drafts:
        return Outcome((), state, dropped=reason, invalid=invalid)
    appended: list[Event] = []
    for draft in drafts:
        state = _append(state, draft, record, now, appended)
    while state is not None and (follow := _follow_up(state, config)) is not None:
        state = _append(state, follow, record, now, appended)
    return Outcome(tuple(appended), state)


def _append(state: RunState | None, draft: _Draft, record: Event, now: datetime,
            appended: list[Event]) -> RunState:
    payload, actor, causation = draft
    seq = (state.seq if state else 0) + 1
    event = Event.of(
        payload, run_id=record.run_id, seq=seq, event_id=event_id_for(record.run_id, seq),
        causation_id=causation, tenant_id=state.tenant_id if state else record.tenant_id,
        event_time=now, actor=actor,
    )
    appended.append(event)
    return evolve(state, event)


def _accept(state: RunState | None, record: Event,
            now: datetime) -> tuple[list[_Draft], str | None, bool]:
    kind, p = record.event_type, record.payload
    if isinstance(p, RunRequested):
        if state is not None:
            return [], f"run {record.run_id} already exists (same idempotency key)", False
        started = RunStarted(text=p.text, route=p.route, idempotency_key=p.idempotency_key,
                             requested_by=p.requested_by, traceparent=p.traceparent,
                             memory=p.memory, memory_subject=p.memory_subject)
        return [(started, ACTOR, record.event_id)], None, False
    if state is None:
        return [], f"{kind} for unknown run {record.run_id}", True
    if state.terminal:
        return [], f"{kind} after the run ended ({state.status})", False
    if isinstance(p, RunCancelled):  # what it cost is the run's to say, not the caller's
        return [(p.model_copy(update={"cost_usd": state.metrics.cost_usd}), record.actor,
                 record.event_id)], None, False
    if isinstance(p, StepTimedOut):
        asked = state.open_requests.get(p.request_id)
        if asked is None or asked.attempt != p.attempt:
            return [], f"timeout of {p.request_type} attempt {p.attempt}, which is not in flight", False
        if now < asked.asked_at + timedelta(seconds=p.timeout_s):
            return [], f"{p.request_type} attempt {p.attempt} is not late yet", False
        return [(p, record.actor, p.request_id)], None, False
    if isinstance(p, RunTimedOut):
        if state.active_at(now) < p.limit_s:
            return [], f"run has worked {state.active_at(now):.1f} s of its {p.limit_s} s", False
        return [(p, record.actor, None)], None, False
    if kind in ("ApprovalGranted", "ApprovalDenied", "ApprovalExpired"):
        parked = state.parked
        if (state.status != Status.AWAITING_APPROVAL or parked is None
                or parked.step_id != getattr(p, "step_id", None)):
            return [], f"{kind} for step {getattr(p, 'step_id', '?')} but nothing waits there", False
        if kind == "ApprovalExpired" and now < parked.expires_at:
            return [], f"approval of step {parked.step_id} expires only at {parked.expires_at}", False
        return [(p, record.actor, state.parked_event_id)], None, False
    request = state.open_requests.get(record.causation_id or "")
    if request is None:
        return [], f"{kind} answers {record.causation_id}, which is not an open request", False
    if kind not in answers_to(request.event):
        return [], f"{kind} cannot answer a {request.kind}", True
    return [(p, record.actor, record.causation_id)], None, False


def _follow_up(state: RunState, config: OrchestratorConfig) -> _Draft | None:
    """The orchestrator's own next event after the run's last one, if any."""
    last = state.last
    if last is None or state.terminal:
        return None
    p, cause = last.payload, last.event_id
    kind = last.event_type
    if kind in ("PlanGenerated", "ObservationCaptured"):
        return _next_step(state, config, cause)
    if kind == "PlanRejected":
        return ResponseFinalized(text=FALLBACK_ANSWER.format(reason=state.failure)), ACTOR, cause
    if kind == "BudgetExceeded" and not state.steps:
        return ResponseFinalized(text=NO_BUDGET_ANSWER.format(reason=state.failure)), ACTOR, cause
    if kind == "ToolRejected":
        assert isinstance(p, ToolRejected)
        return ObservationCaptured(step_id=p.step_id, tool=p.tool, status="denied",
                                   summary=p.reason), ACTOR, cause
    if kind == "ToolExecuted":
        assert isinstance(p, ToolExecuted)
        return ObservationCaptured(step_id=p.step_id, tool=p.tool, status=p.status,
                                   summary=summarize(p)), ACTOR, cause
    if kind == "ApprovalGranted":
        assert isinstance(p, ApprovalGranted)
        parked = _parked_request(state)
        return ToolApproved(
            step_id=parked.step_id, tool=parked.tool, input_json=parked.input_json,
            idempotency_key=f"{state.run_id}/{parked.step_id}", rule=parked.rule,
            reason=f"approved by {p.approver}: {p.reason}".rstrip(": "),
            policy_version=parked.policy_version, approved_by=p.approver,
        ), ACTOR, cause
    if kind in ("ApprovalDenied", "ApprovalExpired"):
        parked = _parked_request(state)
        who = p.approver if isinstance(p, ApprovalDenied) else None
        why = p.reason if isinstance(p, ApprovalDenied) else ""
        reason = f"rejected by {who}: {why}" if who else "approval expired"
        return ToolRejected(step_id=parked.step_id, tool=parked.tool, rule=parked.rule,
                            reason=reason.rstrip(": "), policy_version=parked.policy_version,
                            rejected_by=who), ACTOR, cause
    if kind == "BudgetExceeded":
        return _request_response(state, cause)
    if isinstance(p, StepTimedOut):
        return _retry_or_fail(state, p, config, cause)
    if isinstance(p, RunTimedOut):
        return RunFailed(stage="timeout", reason=f"the run worked {p.active_s:.1f} s, past its "
                                                 f"{p.limit_s:g} s limit",
                         cost_usd=state.metrics.cost_usd), ACTOR, cause
    if kind == "ResponseFinalized" and cause in state.open_requests:
        return None  # the memory service keeps what the run learnt first (MemoryStored)
    if kind in ("ResponseFinalized", "MemoryStored"):
        duration = int((last.event_time - state.started_at).total_seconds() * 1000)
        if state.failure is not None:
            stage = "budget" if state.stopped else "planning"
            return RunFailed(stage=stage, reason=state.failure, cost_usd=state.metrics.cost_usd), ACTOR, cause
        return RunCompleted(outcome=run_outcome(state), tool_calls=state.metrics.tool_calls,
                            cost_usd=state.metrics.cost_usd, duration_ms=duration), ACTOR, cause
    return None


def _retry_or_fail(state: RunState, p: StepTimedOut, config: OrchestratorConfig,
                   cause: str) -> _Draft:
    asked = state.open_requests.get(p.request_id)
    if asked is not None and is_memory_request(asked.event):
        # Memory must never block a run: it goes on without, and the log says why. The answer
        # names the request, so it closes it and a late answer from the service is dropped.
        reason = f"the memory service had no answer within {p.timeout_s:g} s"
        if MEMORY_ANSWER[asked.kind] == "MemoryRetrieved":
            return MemoryRetrieved(status="timeout", text=state.text, route=state.route, memories=[],
                                   reason=reason), ACTOR, p.request_id
        return MemoryStored(status="timeout", memories=[], reason=reason), ACTOR, p.request_id
    if asked is not None and p.attempt < config.timeouts.attempts:
        # `backoff` times what the attempt that timed out was given (as the timer recorded it).
        return RequestRetried(request_id=p.request_id, request_type=p.request_type,
                              attempt=p.attempt + 1,
                              timeout_s=round(p.timeout_s * config.timeouts.backoff, 3),
                              request_json=asked.event.model_dump_json()), ACTOR, cause
    return RunFailed(stage="timeout", reason=f"{p.request_type} had no answer after "
                                             f"{p.attempt} attempt(s)",
                     cost_usd=state.metrics.cost_usd), ACTOR, cause


def _parked_request(state: RunState) -> ApprovalRequested:
    assert state.parked is not None, "an approval decision follows a parked call"
    return state.parked


def _next_step(state: RunState, config: OrchestratorConfig, cause: str) -> _Draft:
    if state.step_index >= len(state.steps):
        return _request_response(state, cause)
    step = state.steps[state.step_index]
    cost = config.tool_costs.get(step.tool, 0.0)
    if state.metrics.cost_usd + cost > state.budget_usd:
        return BudgetExceeded(
            limit="budget_usd", limit_value=state.budget_usd, spent=state.metrics.cost_usd,
            reason=f"step {step.id} ({step.tool}, ~${cost:.4f}) would exceed the run's budget",
        ), ACTOR, cause
    return ToolProposed(
        step_id=step.id, tool=step.tool, input_json=step.input_json, objective=step.objective,
        route=state.route, idempotency_key=f"{state.run_id}/{step.id}",
        run_metrics=state.metrics,
    ), ACTOR, cause


def _request_response(state: RunState, cause: str) -> _Draft:
    return ResponseRequested(request_text=state.text, observations=list(state.observations),
                             memories=list(state.memories)), ACTOR, cause


def run_outcome(state: RunState) -> str:
    """How a run that completes ends: succeeded, partial, refused or budget_exceeded."""
    if state.stopped is not None:
        return "budget_exceeded"
    statuses = [o.status for o in state.observations]
    if statuses and all(s == "ok" for s in statuses) and len(statuses) == len(state.steps):
        return "succeeded"
    if any(s == "ok" for s in statuses):
        return "partial"
    return "refused"


def due_timers(state: RunState, now: datetime, config: OrchestratorConfig) -> list[tuple[Record, str | None]]:
    """The timer records (payload, causation) that are due for `state` at `now`.

    An approval window that closed, an attempt that had no answer in time, a run past its
    time limit. The orchestrator service sends them through the inbox like any other record;
    `handle` drops one that is no longer true when it arrives.
    """
    if state.terminal:
        return []
    due: list[tuple[Record, str | None]] = []
    parked = state.parked
    if state.status == Status.AWAITING_APPROVAL and parked is not None and now >= parked.expires_at:
        due.append((ApprovalExpired(step_id=parked.step_id), state.parked_event_id))
    for request_id, asked in state.open_requests.items():
        limit = config.attempt_timeout(asked)
        if now >= asked.asked_at + timedelta(seconds=limit):
            due.append((StepTimedOut(request_id=request_id, request_type=asked.kind,
                                     attempt=asked.attempt, timeout_s=limit), request_id))
    run_s = config.timeouts.run_s
    if run_s and (active := state.active_at(now)) >= run_s:
        due.append((RunTimedOut(limit_s=run_s, active_s=round(active, 3)), None))
    return due
