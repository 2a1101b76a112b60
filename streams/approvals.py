"""People's decisions on parked calls, shared by the CLI and the gateway."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Producer

from processors.state import RunState, Status, fold
from schemas.codec import EventCodec
from schemas.events import Event
from streams.query_api import run_query
from streams.runs import NoSuchRun, decide_approval, read_run
from streams.settings import Settings
from streams.supervisor import alive, processes

__all__ = ["pending_approvals", "decide", "NoSuchRun", "NotWaiting", "PENDING_SQL"]

PENDING_SQL = """
SELECT run_id, tenant_id, argMax(payload, seq) AS request, max(event_time) AS since
FROM agent_events
GROUP BY run_id, tenant_id
HAVING argMax(event_type, seq) = 'ApprovalRequested'
ORDER BY since
"""


class NotWaiting(RuntimeError):
    """The run has no parked call to decide on."""


def pending_approvals(settings: Settings, *, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Calls waiting for a person, oldest first (from the ClickHouse store)."""
    sink = next(p for p in processes(settings) if p.name == "sink")
    result = run_query(settings, PENDING_SQL, sink_running=alive(settings, sink))
    items = []
    for row in result.as_dicts():
        if tenant_id is not None and row["tenant_id"] != tenant_id:
            continue
        req = json.loads(row["request"])
        items.append({"run_id": row["run_id"], "tenant_id": row["tenant_id"], "step_id": req["step_id"],
                      "tool": req["tool"], "input": json.loads(req["input_json"]), "rule": req["rule"],
                      "reason": req["reason"], "since": row["since"], "expires_at": req["expires_at"]})
    return items


def decide(settings: Settings, producer: Producer, codec: EventCodec, run_id: str, *,
           approve: bool, approver: str, reason: str, events: list[Event] | None = None) -> RunState:
    """Send a person's decision on the call `run_id` waits on; returns the run as it was.

    events: the run's events when the caller has just read them (saves a second scan)."""
    state = fold(events if events is not None else read_run(settings, codec, run_id))
    if state is None:
        raise NoSuchRun(f"no run {run_id}")
    if state.status != Status.AWAITING_APPROVAL or state.parked is None:
        raise NotWaiting(f"run {run_id} is not waiting for an approval (it is {state.status})")
    decide_approval(settings, producer, codec, state, approve=approve, approver=approver, reason=reason)
    return state
