"""How a worker answers an event: a result record for the orchestrator's inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from schemas.events import Event, Record

__all__ = ["answer"]

_NS = uuid.UUID("0d3c7a52-7a3e-4f7e-b0e4-52c1f0d1a6a1")


def answer(trigger: Event, payload: Record, *, actor: str, now: datetime) -> Event:
    """The result of `trigger`'s work. Its id follows from the trigger, so a retried worker
    sends the same record and the orchestrator recognises it by its causation."""
    kind = type(payload).__name__
    return Event.of(
        payload, run_id=trigger.run_id, seq=0,
        event_id=str(uuid.uuid5(_NS, f"{trigger.event_id}/{kind}")),
        causation_id=trigger.event_id, tenant_id=trigger.tenant_id, event_time=now, actor=actor,
    )
