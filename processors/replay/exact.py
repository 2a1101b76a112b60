"""Exact replay: fold a recorded run through today's processors and find its first divergence.

The orchestrator is replayed from its inputs. Everything in the log that another actor wrote —
a worker's result, a person's decision, a timer, a cancellation — is what the orchestrator read
from its inbox, so each is rebuilt as that inbox record and fed to `handle` with the recorded
time as `now`; what it appends must be, event for event, what the log holds next.

Each worker's result is also decided again on its recorded trigger (`workers.redecide`) and
compared with the recorded result, so a policy or planning change shows at the event it alters.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.orchestrator import ACTOR, handle
from processors.replay.compare import Divergence, differences, divergence
from processors.replay.dataset import RecordedRun
from processors.replay.workers import WORKERS, Processors, fold_from, redecide
from processors.state import REQUEST_ANSWERS, RunState
from schemas.events import Event, RunRequested, RunStarted

__all__ = ["RunCheck", "check_run", "inbox_record"]

_ANSWER_ENVELOPE = ("event_type", "actor", "causation_id", "tenant_id")


@dataclass(frozen=True, slots=True)
class RunCheck:
    """The verdict of one run's exact replay."""

    run_id: str
    tenant_id: str
    route: str
    events: int
    """Recorded events replayed."""
    divergence: Divergence | None
    """The first event decided otherwise today; None when every decision matches."""
    status: str
    """The run's status as the replay left it."""

    @property
    def diverged(self) -> bool:
        return self.divergence is not None

    def to_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "tenant_id": self.tenant_id, "route": self.route,
                "events": self.events,
                "status": self.status, "diverged": self.diverged,
                "divergence": self.divergence.to_json() if self.divergence else None}


def inbox_record(recorded: Event) -> Event:
    """The inbox record the orchestrator read to append `recorded`.

    A cancellation's id is its event's causation; a worker's result names its request as its
    cause. RunStarted comes from the RunRequested its causation names.
    """
    p = recorded.payload
    if isinstance(p, RunStarted):
        request = RunRequested(text=p.text, route=p.route, idempotency_key=p.idempotency_key,
                               requested_by=p.requested_by, traceparent=p.traceparent,
                               memory=p.memory, memory_subject=p.memory_subject)
        return Event.of(request, run_id=recorded.run_id, seq=0,
                        event_id=recorded.causation_id or f"replay:{recorded.event_id}",
                        tenant_id=recorded.tenant_id, event_time=recorded.event_time,
                        actor="gateway")
    own_id = recorded.causation_id if recorded.event_type == "RunCancelled" else None
    return recorded.model_copy(update={"seq": 0, "event_id": own_id or f"replay:{recorded.event_id}"})


def check_run(run: RecordedRun, *, processors: Processors) -> RunCheck:
    """Replay `run` through today's `processors`; the first divergent event, if any."""
    found = _check(run.events, processors)
    if isinstance(found, Divergence):
        return RunCheck(run.run_id, run.tenant_id, run.route, len(run.events), found, "diverged")
    return RunCheck(run.run_id, run.tenant_id, run.route, len(run.events), None,
                    found.status if found is not None else "unknown")


def _check(events: tuple[Event, ...], processors: Processors) -> RunState | Divergence | None:
    if not events:
        return None
    for i, e in enumerate(events, 1):
        if e.seq != i:
            return Divergence(seq=e.seq, event_type=e.event_type, processor="log",
                              reason=f"seq {e.seq} where {i} belongs: the recording has a gap or a repeat")
    if events[0].event_type != "RunStarted":
        return divergence(events[0], None, processor="log", reason="a run begins with RunStarted")
    config = processors.orchestrator
    by_id: dict[str, Event] = {}
    before_approval: dict[str, RunState | None] = {}
    state: RunState | None = None
    i, n = 0, len(events)
    while i < n:
        recorded = events[i]
        if i and recorded.actor == ACTOR:
            return divergence(recorded, None, processor=ACTOR,
                              reason="today's orchestrator does not append this event")
        trigger = by_id.get(recorded.causation_id or "")
        # A worker's answer to a request (not a timer's StepTimedOut, which names it too).
        if i and trigger is not None \
                and recorded.event_type in REQUEST_ANSWERS.get(trigger.event_type, ()):
            found = _check_answer(recorded, trigger, state, before_approval, processors)
            if found is not None:
                return found
        outcome = handle(state, inbox_record(recorded), now=recorded.event_time, config=config)
        if not outcome.events:
            return divergence(recorded, None, processor=ACTOR,
                              reason=f"today's orchestrator drops it: {outcome.dropped}")
        prior = state
        for j, got in enumerate(outcome.events):
            if i + j >= n:
                return divergence(None, got, processor=ACTOR, seq=got.seq,
                                  reason=f"today's orchestrator appends {got.event_type} after "
                                         "the recording ends")
            expected = events[i + j]
            fields = differences(expected, got)
            if fields:
                return divergence(expected, got, processor=ACTOR, fields=fields)
            by_id[expected.event_id] = expected
            if expected.event_type == "ToolApproved":
                # The executor judges an approval against the run as it stood just before it.
                before_approval[expected.event_id] = fold_from(prior, outcome.events[:j])
        state = outcome.state
        i += len(outcome.events)
    return state


def _check_answer(recorded: Event, trigger: Event, state: RunState | None,
                  before_approval: dict[str, RunState | None],
                  processors: Processors) -> Divergence | None:
    worker = WORKERS.get(trigger.event_type)
    if worker is None:
        return None  # a person's or a timer's decision: the world's, nothing to decide again
    got = redecide(recorded, trigger, state=state,
                   approved_state=before_approval.get(trigger.event_id), processors=processors)
    if isinstance(got, str):
        return divergence(recorded, None, processor=worker,
                          reason=f"today's executor refuses the call: {got}")
    if got is None:
        return None
    fields = differences(recorded, got, envelope=_ANSWER_ENVELOPE)
    return divergence(recorded, got, processor=worker, fields=fields) if fields else None

