"""A run's state as a snapshot record and back: `to_snapshot(state)`, `from_snapshot(snapshot)`.

Pure. The events a state holds (its last event, its open requests) travel encoded as on the
log, so they are read with the events' own released schemas. A snapshot is checked before it
is trusted: its events must belong to its run and agree with its seq.
"""

from __future__ import annotations

from processors.state import OpenRequest, RunState
from schemas.codec import EventCodec
from schemas.snapshots import OpenRequestSnapshot, RunSnapshot

__all__ = ["to_snapshot", "from_snapshot", "SnapshotMismatch"]


class SnapshotMismatch(ValueError):
    """A snapshot that decodes but cannot be the state of its run: rebuild it from the log."""


def to_snapshot(state: RunState, codec: EventCodec) -> RunSnapshot:
    return RunSnapshot(
        run_id=state.run_id, tenant_id=state.tenant_id, route=state.route, text=state.text,
        idempotency_key=state.idempotency_key, started_at=state.started_at, seq=state.seq,
        status=state.status, last=codec.encode(state.last) if state.last is not None else None,
        steps=list(state.steps), budget_usd=state.budget_usd, step_index=state.step_index,
        open_requests=[OpenRequestSnapshot(event=codec.encode(r.event), asked_at=r.asked_at,
                                           attempt=r.attempt, timeout_s=r.timeout_s, refusal=r.refusal)
                       for r in state.open_requests.values()],
        proposed=state.proposed, proposed_event_id=state.proposed_event_id, parked=state.parked,
        parked_event_id=state.parked_event_id, observations=list(state.observations),
        metrics=state.metrics, answer=state.answer, failure=state.failure, stopped=state.stopped,
        active_s=state.active_s, active_since=state.active_since, traceparent=state.traceparent,
        parked_at=state.parked_at, memory=state.memory, memory_subject=state.memory_subject,
        memories=list(state.memories),
    )


def from_snapshot(snapshot: RunSnapshot, codec: EventCodec, *, run_id: str) -> RunState:
    """The state `snapshot` holds; `SnapshotMismatch` (or the codec's `DecodeError`) when it
    cannot be the state of run `run_id` (the record's key)."""
    if snapshot.run_id != run_id:
        raise SnapshotMismatch(f"snapshot of run {snapshot.run_id} under the key of run {run_id}")
    last = codec.decode(snapshot.last) if snapshot.last is not None else None
    if last is None or last.run_id != run_id or last.seq != snapshot.seq:
        raise SnapshotMismatch(f"snapshot of run {run_id} at seq {snapshot.seq} does not end with its "
                               "last event")
    open_requests = {}
    for r in snapshot.open_requests:
        event = codec.decode(r.event)
        if event.run_id != run_id or event.seq > snapshot.seq:
            raise SnapshotMismatch(f"snapshot of run {run_id} waits on a request it cannot have")
        open_requests[event.event_id] = OpenRequest(event, r.asked_at, attempt=r.attempt,
                                                    timeout_s=r.timeout_s, refusal=r.refusal)
    return RunState(
        run_id=snapshot.run_id, tenant_id=snapshot.tenant_id, route=snapshot.route, text=snapshot.text,
        idempotency_key=snapshot.idempotency_key, started_at=snapshot.started_at, seq=snapshot.seq,
        status=snapshot.status, last=last, steps=tuple(snapshot.steps), budget_usd=snapshot.budget_usd,
        step_index=snapshot.step_index, open_requests=open_requests,
        proposed=snapshot.proposed, proposed_event_id=snapshot.proposed_event_id, parked=snapshot.parked,
        parked_event_id=snapshot.parked_event_id, observations=tuple(snapshot.observations),
        metrics=snapshot.metrics, answer=snapshot.answer, failure=snapshot.failure,
        stopped=snapshot.stopped, active_s=snapshot.active_s, active_since=snapshot.active_since,
        traceparent=snapshot.traceparent, parked_at=snapshot.parked_at, memory=snapshot.memory,
        memory_subject=snapshot.memory_subject, memories=tuple(snapshot.memories),
    )

