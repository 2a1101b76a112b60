"""How a replayed event is compared with the recorded one, and how a difference is reported.

Replay compares decisions, not clocks: fields that follow from the time of day or from the bytes
of the policy file are left out, and so are a model call's latency and a run's wall-clock
duration. Everything else — type, actor, seq, ids, causation, payload — must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from schemas.events import Event, ModelCall

__all__ = ["IGNORED", "Divergence", "differences", "divergence", "jsonable"]

IGNORED: dict[str, frozenset[str]] = {
    # now + the guard's approval TTL: a setting and a clock, not a decision.
    "ApprovalRequested": frozenset({"expires_at", "policy_version"}),
    # A hash of the policy file's bytes: a comment edit changes it and no decision.
    "ToolApproved": frozenset({"policy_version"}),
    "ToolRejected": frozenset({"policy_version"}),
    # The time between two recorded clocks; replay has its own.
    "RunCompleted": frozenset({"duration_ms"}),
}
"""Payload fields left out of the comparison, by event type."""

_ENVELOPE = ("event_type", "actor", "seq", "event_id", "causation_id", "tenant_id")
_CALL_FIELDS = tuple(f for f in ModelCall.model_fields if f != "latency_ms")


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first event where today's processors decide otherwise than the recording."""

    seq: int
    """Seq of the recorded event that differs (or that today's processors would append there)."""
    event_type: str
    """Type of the recorded event at `seq`; empty when the recording has none there."""
    processor: str
    """Whose decision differs: orchestrator, planner, policy_guard, tool_executor, responder."""
    reason: str
    """What differs, in a line."""
    expected: dict[str, Any] | None = None
    """The recorded event (its type and the fields that differ); None when there is none."""
    got: dict[str, Any] | None = None
    """What today's processors decide (same fields); None when they decide nothing."""

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "event_type": self.event_type, "processor": self.processor,
                "reason": self.reason, "expected": self.expected, "got": self.got}


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def differences(expected: Event, got: Event, *, envelope: tuple[str, ...] = _ENVELOPE) -> list[str]:
    """Names of the fields (`payload.x` for the payload's) in which `got` differs."""
    out = [name for name in envelope if getattr(expected, name) != getattr(got, name)]
    if expected.event_type != got.event_type or expected.payload == got.payload:
        return out  # the fast path: equal payloads, or types whose fields do not compare
    ignored = IGNORED.get(expected.event_type, frozenset())
    for name in type(expected.payload).model_fields:
        if name in ignored:
            continue
        a, b = getattr(expected.payload, name), getattr(got.payload, name)
        if isinstance(a, ModelCall) and isinstance(b, ModelCall):
            if any(getattr(a, f) != getattr(b, f) for f in _CALL_FIELDS):
                out.append(f"payload.{name}")
        elif name == "request_json" and isinstance(a, str) and isinstance(b, str):
            if not _same_event_json(a, b):
                out.append(f"payload.{name}")
        elif a != b:
            out.append(f"payload.{name}")
    return out


def _same_event_json(a: str, b: str) -> bool:
    """Whether two JSON texts hold the same event: a field added to the schema since `a` was
    written is absent there and at its default in `b`, and that is no difference."""
    if a == b:
        return True
    try:
        return Event.model_validate_json(a) == Event.model_validate_json(b)
    except ValueError:
        return False


def _fields(event: Event, names: list[str]) -> dict[str, Any]:
    shown: dict[str, Any] = {"event_type": event.event_type}
    for name in names:
        if name.startswith("payload."):
            shown[name] = jsonable(getattr(event.payload, name.removeprefix("payload.")))
        else:
            shown[name] = getattr(event, name)
    return shown


def divergence(expected: Event | None, got: Event | None, *, processor: str, reason: str = "",
               seq: int | None = None, fields: list[str] | None = None) -> Divergence:
    """A Divergence showing the differing `fields` of both events (all of a missing one)."""
    if fields is None:
        fields = differences(expected, got) if expected is not None and got is not None else []
    if not reason:
        reason = (f"{expected.event_type if expected else 'nothing'} recorded, "
                  f"{got.event_type if got else 'nothing'} replayed")
        if expected is not None and got is not None and expected.event_type == got.event_type:
            reason = f"{expected.event_type}: {', '.join(fields)} differ{'s' if len(fields) == 1 else ''}"
    where = seq if seq is not None else (expected.seq if expected is not None else got.seq if got else 0)
    return Divergence(
        seq=where, event_type=expected.event_type if expected is not None else "",
        processor=processor, reason=reason,
        expected=None if expected is None else (_fields(expected, fields) if fields else _whole(expected)),
        got=None if got is None else (_fields(got, fields) if fields else _whole(got)),
    )


def _whole(event: Event) -> dict[str, Any]:
    return {"event_type": event.event_type, "actor": event.actor,
            "causation_id": event.causation_id, "payload": event.payload.model_dump(mode="json")}
