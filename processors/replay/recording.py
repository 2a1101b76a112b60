"""What a recorded run can answer when a counterfactual replay asks: the observation of a tool
call, a person's decision on a parked call, a finalizer's answer, a cancellation, a worker that
did not answer in time.

Replay never runs a tool and never asks a person: a question the recording cannot answer stops
the run there, marked as such.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Protocol

from processors.replay.dataset import RecordedRun
from processors.replay.summary import ACTION_OF
from schemas.events import (
    ApprovalRequested,
    Event,
    ResponseDrafted,
    ResponseFinalized,
    StepTimedOut,
    ToolApproved,
    ToolExecuted,
    ToolProposed,
    ToolRejected,
)

__all__ = ["World", "RecordedWorld", "call_key"]


def call_key(tool: str, input_json: str) -> tuple[str, str]:
    """A call's identity: the tool and its input, key order and spacing aside."""
    try:
        return tool, json.dumps(json.loads(input_json), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return tool, input_json


class World(Protocol):
    """What answers the questions no processor decides (the recording, in replay)."""

    planner_refusal: Event | None
    """The planner's refusal to spend (a tenant's daily budget), which replay reuses."""
    cancellation: Event | None
    """The run's cancellation, delivered when nothing else moves the run on."""

    def observation(self, tool: str, input_json: str) -> ToolExecuted | None: ...

    def decision(self, tool: str, input_json: str) -> tuple[str, str | None] | None: ...

    def person(self, parked: ApprovalRequested) -> tuple[Event, timedelta] | None: ...

    def finalized(self, draft: str) -> ResponseFinalized | None: ...

    def cancelled_by(self, now: datetime) -> Event | None: ...

    def timeout(self, request_type: str, attempt: int) -> Event | None: ...


class RecordedWorld:
    """The answers a recorded run holds, indexed by call."""

    def __init__(self, run: RecordedRun) -> None:
        by_id = {e.event_id: e for e in run.events}
        self._observations: dict[tuple[str, str], deque[ToolExecuted]] = defaultdict(deque)
        self._decisions: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._people: dict[tuple[str, str], tuple[Event, timedelta]] = {}
        self._finals: dict[str, ResponseFinalized] = {}
        self._timeouts: dict[str, deque[Event]] = defaultdict(deque)
        self.planner_refusal: Event | None = None
        """The planner's BudgetExceeded (the tenant's daily budget was spent), if recorded."""
        self.cancellation: Event | None = None
        """The run's RunCancelled, if recorded."""
        approved_calls: dict[str, tuple[str, str]] = {}
        drafts: dict[str, str] = {}
        for e in run.events:
            p = e.payload
            cause = by_id.get(e.causation_id or "")
            if isinstance(p, ToolApproved):
                approved_calls[e.event_id] = call_key(p.tool, p.input_json)
            proposed = cause.payload if cause is not None else None
            if isinstance(p, ToolApproved | ToolRejected | ApprovalRequested) \
                    and isinstance(proposed, ToolProposed):
                key = call_key(proposed.tool, proposed.input_json)
                self._decisions.setdefault(key, (ACTION_OF[e.event_type], p.rule))
            elif isinstance(p, ToolExecuted) and e.causation_id in approved_calls:
                self._observations[approved_calls[e.causation_id]].append(p)
            elif e.event_type in ("ApprovalGranted", "ApprovalDenied", "ApprovalExpired") \
                    and cause is not None and isinstance(cause.payload, ApprovalRequested):
                parked = cause.payload
                self._people[call_key(parked.tool, parked.input_json)] = (e, e.event_time - cause.event_time)
            elif isinstance(p, ResponseDrafted):
                drafts[e.event_id] = p.text
            elif isinstance(p, ResponseFinalized) and p.model_call is not None \
                    and e.causation_id in drafts:
                self._finals[drafts[e.causation_id]] = p
            elif e.event_type == "BudgetExceeded" and e.actor == "planner":
                self.planner_refusal = e
            elif e.event_type == "RunCancelled":
                self.cancellation = e
            elif isinstance(p, StepTimedOut):
                self._timeouts[p.request_type].append(e)

    def observation(self, tool: str, input_json: str) -> ToolExecuted | None:
        """The recorded outcome of this very call (each recorded outcome answers once)."""
        found = self._observations.get(call_key(tool, input_json))
        return found.popleft() if found else None

    def decision(self, tool: str, input_json: str) -> tuple[str, str | None] | None:
        """The guard's recorded (action, rule) on this very call, if it was proposed."""
        return self._decisions.get(call_key(tool, input_json))

    def person(self, parked: ApprovalRequested) -> tuple[Event, timedelta] | None:
        """A person's (or the timer's) recorded decision on this parked call, and how long
        after the parking it came."""
        return self._people.get(call_key(parked.tool, parked.input_json))

    def finalized(self, draft: str) -> ResponseFinalized | None:
        """What the finalizer model wrote from this very draft, if it did."""
        return self._finals.get(draft)

    def cancelled_by(self, now: datetime) -> Event | None:
        """The recorded cancellation, once replay's clock has reached it."""
        c = self.cancellation
        return c if c is not None and c.event_time <= now else None

    def timeout(self, request_type: str, attempt: int) -> Event | None:
        """The recorded StepTimedOut of the next request of this type at this attempt: the
        worker was not there to answer (each recorded timeout happens once, in order)."""
        found = self._timeouts.get(request_type)
        if not found:
            return None
        head = found[0].payload
        if isinstance(head, StepTimedOut) and head.attempt == attempt:
            return found.popleft()
        return None
