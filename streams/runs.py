"""Requesting runs, deciding on them, and reading their timelines (through `streams.run_reads`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import KafkaError, KafkaException, Producer

from processors.spans import new_traceparent
from processors.state import RunState, Status, evolve, fold
from schemas.codec import EventCodec
from schemas.events import ApprovalDenied, ApprovalGranted, Event, RunCancelled, RunRequested
from streams.edge import LogUnavailable
from streams.kafka import headers_for
from streams.memory_ops import memory_opted_in
from streams.run_reads import reader_for
from streams.service import utcnow
from streams.settings import Settings

__all__ = ["run_id_for", "request_run", "run_request", "read_run", "wait_for_run", "run_status",
           "send_to_inbox",
           "decide_approval", "cancel_run", "follow_run",
           "NoSuchRun", "AlreadyEnded", "LogUnavailable"]

_RUN_NS = uuid.UUID("3b7f5f0e-2f5c-4d55-8d0e-6a3f9c4b2e11")


def run_id_for(tenant_id: str, idempotency_key: str) -> str:
    """The same key (per tenant) always names the same run: that is what makes it idempotent."""
    return str(uuid.uuid5(_RUN_NS, f"{tenant_id}\x00{idempotency_key}"))


def send_to_inbox(settings: Settings, producer: Producer, codec: EventCodec, record: Event, *,
                  timeout_s: float = 30.0) -> None:
    """Produce one record to the inbox and wait until the broker has it (that record only: a
    gateway's other requests, produced meanwhile on the same producer, are not waited for)."""
    delivered = threading.Event()
    errors: list[KafkaError] = []

    def done(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)
        delivered.set()

    producer.produce(settings.inbox_topic, key=record.run_id, value=codec.encode(record),
                     headers=headers_for(record), on_delivery=done)
    deadline = time.monotonic() + timeout_s
    while not delivered.is_set() and time.monotonic() < deadline:
        producer.poll(0.005)  # serves delivery callbacks, whoever's they are
    if errors or not delivered.is_set():
        raise KafkaException(errors[0] if errors else f"inbox record not delivered in {timeout_s:g} s")


def request_run(settings: Settings, producer: Producer, codec: EventCodec, *, text: str,
                tenant_id: str, route: str = "default", idempotency_key: str | None = None,
                requested_by: str | None = None, memory: bool | None = None,
                memory_subject: str | None = None) -> str:
    """Put a RunRequested on the inbox; returns the run id.

    memory: whether the run uses the tenant's long-term memory; None asks the memory service
        whether the tenant opted in (no answer within half a second: no memory).
    """
    if memory is None:
        memory = memory_opted_in(settings, tenant_id)
    record = run_request(text=text, tenant_id=tenant_id, route=route, idempotency_key=idempotency_key,
                         requested_by=requested_by, memory=memory, memory_subject=memory_subject)
    send_to_inbox(settings, producer, codec, record)
    return record.run_id


def run_request(*, text: str, tenant_id: str, route: str = "default",
                idempotency_key: str | None = None, requested_by: str | None = None,
                memory: bool = False, memory_subject: str | None = None) -> Event:
    """The inbox record that asks for a run (its id follows from tenant and idempotency key)."""
    key = idempotency_key or uuid.uuid4().hex
    return Event.of(
        RunRequested(text=text, route=route, idempotency_key=key, requested_by=requested_by,
                     traceparent=new_traceparent(), memory=memory, memory_subject=memory_subject),
        run_id=run_id_for(tenant_id, key), seq=0, event_id=str(uuid.uuid4()), tenant_id=tenant_id,
        event_time=utcnow(), actor=f"user:{requested_by}" if requested_by else "gateway",
    )


def decide_approval(settings: Settings, producer: Producer, codec: EventCodec, state: RunState, *,
                    approve: bool, approver: str, reason: str) -> None:
    """A person's decision on a run's parked call, sent to the orchestrator."""
    assert state.parked is not None
    payload = (ApprovalGranted if approve else ApprovalDenied)(
        step_id=state.parked.step_id, approver=approver, reason=reason)
    send_to_inbox(settings, producer, codec, Event.of(
        payload, run_id=state.run_id, seq=0, event_id=str(uuid.uuid4()),
        causation_id=state.parked_event_id, tenant_id=state.tenant_id, event_time=utcnow(),
        actor=f"human:{approver}"))


class NoSuchRun(LookupError):
    """No event of this run is on the log."""


class AlreadyEnded(RuntimeError):
    """The run reached a terminal event; it cannot change any more."""


def cancel_run(settings: Settings, producer: Producer, codec: EventCodec, run_id: str, *,
               reason: str, requested_by: str, events: list[Event] | None = None) -> RunState:
    """Ask the orchestrator to cancel `run_id`; returns the run as it was.

    events: the run's events when the caller has just read them (saves a second scan)."""
    state = fold(events if events is not None else read_run(settings, codec, run_id))
    if state is None:
        raise NoSuchRun(f"no run {run_id}")
    if state.terminal:
        raise AlreadyEnded(f"run {run_id} already ended ({state.status})")
    send_to_inbox(settings, producer, codec, Event.of(
        RunCancelled(reason=reason, requested_by=requested_by), run_id=run_id, seq=0,
        event_id=str(uuid.uuid4()), tenant_id=state.tenant_id, event_time=utcnow(),
        actor=f"user:{requested_by}"))
    return state


def follow_run(settings: Settings, codec: EventCodec, run_id: str, *, timeout_s: float,
               tenant_id: str | None = None) -> Iterator[Event]:
    """The run's events so far, then each new one as it is committed, for `timeout_s`."""
    return reader_for(settings, codec).follow(run_id, timeout_s=timeout_s, tenant_id=tenant_id)


def read_run(settings: Settings, codec: EventCodec, run_id: str, *,
             tenant_id: str | None = None) -> list[Event]:
    """Every event of the run committed so far (none when it is another tenant's than `tenant_id`);
    an O(run) read, see `streams.run_reads`."""
    return reader_for(settings, codec).read(run_id, tenant_id=tenant_id).events


def run_status(events: list[Event]) -> str:
    state = fold(events)
    return state.status if state is not None else "unknown"


def wait_for_run(settings: Settings, codec: EventCodec, run_id: str, *,
                 timeout_s: float = 60.0, after_seq: int = 0) -> list[Event]:
    """Events until the run ends or waits on a person past `after_seq` (or the timeout passes)."""
    events: list[Event] = []
    state: RunState | None = None
    for event in follow_run(settings, codec, run_id, timeout_s=timeout_s):
        events.append(event)
        state = evolve(state, event)
        if event.seq > after_seq and (state.terminal or state.status == Status.AWAITING_APPROVAL):
            break
    return events
