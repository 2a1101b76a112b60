"""Python mirrors of the alert records in `schemas/avro/` (a unit test proves they agree).

The alerts topic holds `Alert`s: an `AlertRaised` when a rule's condition starts to hold in a
scope, an `AlertResolved` (same `alert_id`) when it stops. The gates topic holds the
`GateVerdict`s `agentlog gate` records, which the block rule reads.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal, get_args

from schemas.events import Long, Millis, Record

__all__ = ["AlertRaised", "AlertResolved", "AlertBody", "ALERT_BODY_TYPES", "Alert", "GateVerdict",
           "Severity", "SEVERITIES", "FIRING_FAILS", "alert_id"]

Severity = Literal["page", "warn", "block"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
FIRING_FAILS = frozenset({"page", "block"})
"""The severities that make `agentlog alerts check` fail while an alert of theirs fires."""


def alert_id(rule: str, scope: str, window_start: datetime) -> str:
    """The alert's id, the same whoever computes it and however often: (rule, scope, window)."""
    millis = int(window_start.timestamp() * 1000)
    return hashlib.sha256(f"{rule}\x00{scope}\x00{millis}".encode()).hexdigest()[:32]


class AlertRaised(Record):
    value: float | None
    threshold: float | None
    baseline: float | None
    runs: Long


class AlertResolved(Record):
    value: float | None
    resolved_window_start: Millis


AlertBody = AlertRaised | AlertResolved

# Order matters: it is the order of the Avro union in agentlog.Alert.avsc.
ALERT_BODY_TYPES: dict[str, type[Record]] = {t.__name__: t for t in get_args(AlertBody)}


class Alert(Record):
    alert_id: str
    rule: str
    severity: str
    scope: str
    window_start: Millis
    window_end: Millis
    at: Millis
    summary: str
    body: AlertBody

    @property
    def kind(self) -> str:
        """`AlertRaised` or `AlertResolved`."""
        return type(self.body).__name__

    @property
    def delivery_id(self) -> str:
        """What a receiver deduplicates on: the alert id and whether it was raised or resolved
        (one alert is delivered twice, once each way)."""
        return f"{self.alert_id}:{'raised' if isinstance(self.body, AlertRaised) else 'resolved'}"

    def to_json(self) -> dict[str, object]:
        """The alert as the webhook and `agentlog alerts list --json` show it."""
        return {"alert_id": self.alert_id, "kind": self.kind, "rule": self.rule,
                "severity": self.severity, "scope": self.scope,
                "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
                "at": self.at.isoformat(), "summary": self.summary, **self.body.model_dump(mode="json")}


class GateVerdict(Record):
    verdict_id: str
    candidate: str
    passed: bool
    at: Millis
    failed_checks: list[str]
    scores: str
