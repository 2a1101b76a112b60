"""People's decisions on parked calls, shared by the CLI and the gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from processors.state import RunState, Status, fold
from schemas.codec import EventCodec
from schemas.events import Event
from sinks.ddl import APPROVAL_EVENTS
from streams.edge import Intake, Poison, read_partitions
from streams.kafka import header, make_codec
from streams.query_api import waiting_approvals
from streams.runs import NoSuchRun, decide_approval, read_run
from streams.settings import Settings

__all__ = ["pending_approvals", "decide", "NoSuchRun", "NotWaiting"]

class NotWaiting(RuntimeError):
    """The run has no parked call to decide on."""


def pending_approvals(settings: Settings, *, tenant_id: str | None = None,
                      codec: EventCodec | None = None) -> list[dict[str, Any]]:
    """Calls waiting for a person, oldest first: the approval queue as ClickHouse holds it, brought
    up to the log's end with the approval events after what it holds (so it never lags the log).
    `QueryError` when the store does not answer."""
    through, stored = waiting_approvals(settings, tenant_id=tenant_id, sink_running=True)
    waiting: dict[str, dict[str, Any]] = {}
    for row in stored:
        waiting[row["run_id"]] = {**row, "event_time": _utc(row["event_time"]),
                                  "payload": json.loads(row["payload"])}
    intake = Intake(settings, codec or make_codec(settings), service="approvals", dead_letters=None)
    starts = {p: through.get(p, -1) + 1 for p in range(settings.partitions)}
    for msg in read_partitions(settings, settings.events_topic, starts, tail=True):
        if header(msg.headers(), "event_type") not in APPROVAL_EVENTS:
            continue
        if tenant_id is not None and header(msg.headers(), "tenant_id") != tenant_id:
            continue
        try:
            event = intake.decode(msg)
        except Poison:
            continue
        if event.event_type == "ApprovalRequested":
            waiting[event.run_id] = {"run_id": event.run_id, "tenant_id": event.tenant_id, "seq": event.seq,
                                     "event_time": event.event_time,
                                     "payload": event.payload.model_dump(mode="json")}
        elif event.run_id in waiting and event.seq > waiting[event.run_id]["seq"]:
            del waiting[event.run_id]
    items = []
    for row in sorted(waiting.values(), key=lambda r: r["event_time"]):
        req = row["payload"]
        items.append({"run_id": row["run_id"], "tenant_id": row["tenant_id"], "step_id": req["step_id"],
                      "tool": req["tool"], "input": json.loads(req["input_json"]), "rule": req["rule"],
                      "reason": req["reason"], "since": row["event_time"].isoformat(),
                      "expires_at": req["expires_at"]})
    return items


def _utc(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
