"""Counterfactual replay: a recorded run again, with a candidate's planner, finalizer or policy.

The run restarts from its recorded request and goes through today's orchestrator. Each request
it appends is answered as the stack would answer it — the candidate's planner and policy decide —
except where only the world can answer: a tool's observation, a person's decision, a
cancellation. Those come from the recording when it holds the very same call; when it does not,
the run stops there and says why. No tool runs and no person is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.executor import execution_result, refusal
from processors.guard import decide_call
from processors.models import DEFAULT_ROUTE, RecordedPlanner, ResponseWriter, final_response, plan_with
from processors.models.errors import NotRecorded
from processors.orchestrator import ACTOR as ORCHESTRATOR
from processors.orchestrator import handle
from processors.ports import PlannerModel
from processors.replay.compare import Divergence, differences, divergence
from processors.replay.dataset import RecordedRun
from processors.replay.exact import inbox_record
from processors.replay.recording import RecordedWorld, World
from processors.replay.summary import ACTION_OF, summarize
from processors.replay.workers import Processors, fold_from
from processors.responder import ACTOR as RESPONDER
from processors.responder import draft_response
from processors.results import answer
from processors.state import MEMORY_ANSWER, RunState, Status, is_memory_request
from schemas.events import (
    Event,
    MemoryRetrieved,
    MemoryStored,
    ResponseDrafted,
    ResponseFinalized,
    RunStarted,
    StepTimedOut,
    ToolApproved,
    ToolProposed,
)

__all__ = ["Candidate", "Simulation", "simulate", "replay_run"]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """What a counterfactual replay changes; whatever it leaves unset is as recorded."""

    name: str
    """How results and scores name it."""
    processors: Processors
    """Its policy, tools, prices and orchestrator configuration."""
    planners: Mapping[str, PlannerModel] | None = None
    """Planner per route (`default` serves the others); None: each run's recorded plan."""
    writers: Mapping[str, ResponseWriter | None] | None = None
    """Finalizer per route; None: the recorded final answer where the draft is unchanged,
    otherwise the draft."""
    description: str = ""


@dataclass
class Simulation:
    """One run replayed with a candidate."""

    run: RecordedRun
    candidate: Candidate
    world: World
    now: datetime
    """Replay's clock: the recorded start, moved on by each model call's latency, each tool
    call's recorded duration and each person's recorded delay."""
    log: list[Event] = field(default_factory=list)
    """The events the candidate's run appended."""
    by_id: dict[str, Event] = field(default_factory=dict)
    before: dict[str, RunState | None] = field(default_factory=dict)
    """The run just before each ToolApproved: what the executor judges it against."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """Each proposed call: the candidate's decision beside the baseline's."""
    stopped: str | None = None
    """Why the run stopped before its end: a question the world could not answer."""


def simulate(run: RecordedRun, *, candidate: Candidate, baseline: Processors,
             world: World | None = None) -> Simulation:
    """Run `run`'s request again with `candidate`.

    baseline: today's configuration; it decides the baseline of calls the recording never made.
    world: what answers tool calls, people's decisions and cancellations (default: the run's
        recording).
    """
    sim = Simulation(run, candidate, world if world is not None else RecordedWorld(run),
                     run.events[0].event_time if run.events else datetime.min.replace(tzinfo=UTC))
    if run.started is not None:
        _simulate(sim, baseline)
    else:
        sim.stopped = "the recording does not begin with RunStarted"
    return sim


def replay_run(run: RecordedRun, *, candidate: Candidate, baseline: Processors) -> dict[str, Any]:
    """Replay `run` with `candidate`; the per-run result, baseline and candidate side by side.

    baseline: today's configuration, which decides the baseline of calls the recording never
        made (policy regressions are judged against it).
    """
    sim = simulate(run, candidate=candidate, baseline=baseline)
    replayed = summarize(sim.log)
    if sim.stopped is not None:
        replayed["status"] = "stopped"  # not running on: stopped where the recording ran out
    return {
        "run_id": run.run_id, "tenant_id": run.tenant_id, "route": run.route, "text": run.text,
        "candidate_name": candidate.name,
        "baseline": summarize(run.events), "candidate": replayed,
        "divergence": _first_difference(run.events, sim.log, sim.stopped),
        "unanswered": sim.stopped, "policy_calls": sim.calls,
        "reference": _reference(run),
    }


def _simulate(sim: Simulation, baseline: Processors) -> None:
    config = sim.candidate.processors.orchestrator
    outcome = handle(None, inbox_record(sim.run.events[0]), now=sim.now, config=config)
    state = _append(sim, None, outcome.events, outcome.state)
    while state is not None and not state.terminal:
        record = _next_input(sim, state, baseline)
        if record is None:
            cancel = sim.world.cancellation
            if cancel is None:
                return  # sim.stopped says why
            sim.stopped, record = None, inbox_record(cancel)
            sim.now = max(sim.now, cancel.event_time)
        outcome = handle(state, record, now=sim.now, config=config)
        if not outcome.events:
            sim.stopped = f"the orchestrator dropped {record.event_type}: {outcome.dropped}"
            return
        state = _append(sim, state, outcome.events, outcome.state)


def _append(sim: Simulation, prior: RunState | None, events: tuple[Event, ...],
            state: RunState | None) -> RunState | None:
    sim.log.extend(events)
    for j, e in enumerate(events):
        sim.by_id[e.event_id] = e
        if e.event_type == "ToolApproved":
            sim.before[e.event_id] = fold_from(prior, events[:j])
    return state


def _next_input(sim: Simulation, state: RunState, baseline: Processors) -> Event | None:
    """The inbox record that moves the run on, or None (and `sim.stopped` says why)."""
    if (cancel := sim.world.cancelled_by(sim.now)) is not None:
        return inbox_record(cancel)
    if state.status == Status.AWAITING_APPROVAL and state.parked is not None:
        found = sim.world.person(state.parked)
        if found is None:
            sim.stopped = (f"{state.parked.tool} waits for a person, and the recording has no "
                           f"decision on this call: {state.parked.input_json}")
            return None
        decision, delay = found
        sim.now = max(sim.now + delay, state.parked.expires_at) \
            if decision.event_type == "ApprovalExpired" else sim.now + delay
        return decision.model_copy(update={
            "run_id": state.run_id, "tenant_id": state.tenant_id, "seq": 0,
            "event_id": f"replay:{decision.event_id}", "causation_id": state.parked_event_id,
            "event_time": sim.now})
    if not state.open_requests:
        sim.stopped = f"nothing more to answer, but the run is {state.status}"
        return None
    # One request is open at a time; the latest is the one the run waits on.
    request_id, asked = list(state.open_requests.items())[-1]
    timed_out = sim.world.timeout(asked.kind, asked.attempt)
    if timed_out is not None:  # the recorded worker did not answer in time: neither does this one
        p = timed_out.payload
        assert isinstance(p, StepTimedOut)
        sim.now = max(sim.now, asked.asked_at + timedelta(seconds=p.timeout_s))
        return timed_out.model_copy(update={
            "run_id": state.run_id, "tenant_id": state.tenant_id, "seq": 0,
            "event_id": f"replay:{timed_out.event_id}", "causation_id": request_id,
            "event_time": sim.now})
    return _answer(sim, sim.by_id[request_id], state, baseline)


def _answer(sim: Simulation, trigger: Event, state: RunState, baseline: Processors) -> Event | None:
    procs = sim.candidate.processors
    p = trigger.payload
    if is_memory_request(trigger):
        return _memory_answer(sim, trigger)
    if isinstance(p, RunStarted | MemoryRetrieved):
        refused = sim.world.planner_refusal
        if refused is not None:
            return refused.model_copy(update={"seq": 0, "event_id": f"replay:{refused.event_id}"})
        planner = _for_route(sim.candidate.planners, p.route)
        if planner is None:
            planner = RecordedPlanner({sim.run.run_id: sim.run.events})
        try:
            planned = plan_with(trigger, planner, config=procs.models, registry=procs.registry,
                                now=lambda: sim.now)
        except NotRecorded as exc:
            sim.stopped = str(exc)
            return None
        return _later(sim, planned, getattr(planned.payload, "model_call", None))
    if isinstance(p, ToolProposed):
        decided = decide_call(trigger, policy=procs.policy, now=sim.now,
                              approval_ttl=procs.approval_ttl)
        sim.calls.append(_policy_call(sim, trigger, decided, baseline))
        return decided
    if isinstance(p, ToolApproved):
        why = refusal(sim.before.get(trigger.event_id), trigger, registry=procs.registry)
        if why is not None:
            sim.stopped = f"the executor refuses {p.tool}: {why}"
            return None
        seen = sim.world.observation(p.tool, p.input_json)
        if seen is None:
            sim.stopped = (f"the recording has no observation of {p.tool} with this input, and "
                           f"replay runs no tool: {p.input_json}")
            return None
        sim.now += timedelta(milliseconds=seen.duration_ms)
        return execution_result(trigger, status=seen.status, output_json=seen.output_json,
                                error=seen.error, duration_ms=seen.duration_ms,
                                cost_usd=seen.cost_usd, now=sim.now)
    if trigger.event_type == "ResponseRequested":
        return draft_response(trigger, now=sim.now, stopped=state.stopped)
    if isinstance(p, ResponseDrafted):
        if sim.candidate.writers is None:
            recorded = sim.world.finalized(p.text)
            if recorded is not None:
                return _later(sim, answer(trigger, recorded, actor=RESPONDER, now=sim.now),
                              recorded.model_call)
            writer = None
        else:
            writer = _for_route(sim.candidate.writers, state.route)
        sent, _error = final_response(trigger, request_text=state.text, writer=writer,
                                      config=procs.models, now=sim.now)
        final = sent.payload
        return _later(sim, sent, final.model_call if isinstance(final, ResponseFinalized) else None)
    sim.stopped = f"no worker answers {trigger.event_type}"
    return None


def _memory_answer(sim: Simulation, trigger: Event) -> Event | None:
    """The memory service's recorded answer, reused: replay reads and writes no store. A run that
    now completes where the recorded one did not has nothing recorded to keep: it stores nothing."""
    kind = MEMORY_ANSWER[trigger.event_type]
    recorded = next((e for e in sim.run.events if e.event_type == kind and e.actor != ORCHESTRATOR), None)
    if recorded is not None:
        return answer(trigger, recorded.payload, actor=recorded.actor, now=sim.now)
    if kind == "MemoryStored":
        return answer(trigger, MemoryStored(status="unavailable", memories=[],
                                            reason="replay stores no memory"), actor="memory", now=sim.now)
    sim.stopped = "the recording has no memories retrieved for this run"
    return None


def _later(sim: Simulation, event: Event, call: Any) -> Event:
    """`event`, at the replay clock moved on by the model call's latency."""
    if call is None or not call.latency_ms:
        return event
    sim.now += timedelta(milliseconds=call.latency_ms)
    return event.model_copy(update={"event_time": sim.now})


def _for_route(by_route: Mapping[str, Any] | None, route: str) -> Any:
    if by_route is None:
        return None
    return by_route[route] if route in by_route else by_route.get(DEFAULT_ROUTE)


def _policy_call(sim: Simulation, proposed: Event, decided: Event, baseline: Processors) -> dict[str, Any]:
    """The candidate's decision on one call beside the baseline's: the recorded decision when
    the recording made this very call, else what today's policy decides."""
    p = proposed.payload
    assert isinstance(p, ToolProposed)
    recorded = sim.world.decision(p.tool, p.input_json)
    if recorded is not None:
        base_action, base_rule, source = recorded[0], recorded[1], "recorded"
    else:
        today = decide_call(proposed, policy=baseline.policy, now=sim.now,
                            approval_ttl=baseline.approval_ttl)
        base_action, base_rule = ACTION_OF[today.event_type], getattr(today.payload, "rule", None)
        source = "policy"
    return {"step_id": p.step_id, "tool": p.tool, "input_json": p.input_json,
            "baseline": {"action": base_action, "rule": base_rule, "source": source},
            "candidate": {"action": ACTION_OF[decided.event_type],
                          "rule": getattr(decided.payload, "rule", None)}}


def _first_difference(recorded: tuple[Event, ...], replayed: list[Event],
                      stopped: str | None) -> dict[str, Any] | None:
    found: Divergence | None = None
    for expected, got in zip(recorded, replayed, strict=False):
        if fields := differences(expected, got):
            found = divergence(expected, got, processor=got.actor, fields=fields)
            break
    else:
        if len(replayed) < len(recorded):
            nxt = recorded[len(replayed)]
            found = divergence(nxt, None, processor="replay",
                               reason=stopped or "the candidate run ends here")
        elif len(replayed) > len(recorded):
            extra = replayed[len(recorded)]
            found = divergence(None, extra, processor=extra.actor, seq=extra.seq,
                               reason="the recording ends before the candidate run")
    return found.to_json() if found else None


def _reference(run: RecordedRun) -> dict[str, Any] | None:
    ref = run.reference
    if ref is None:
        return None
    return {"answer": ref.answer, "must_contain": list(ref.must_contain)}
