"""Avro wire format of alert records (`agentlog.Alert`) and gate verdicts (`agentlog.GateVerdict`),
framed like events."""

from __future__ import annotations

from schemas.alerts import ALERT_BODY_TYPES, Alert, GateVerdict
from schemas.codec import AvroCodec, DecodeError, SchemaRegistry

__all__ = ["AlertCodec", "GateCodec", "ALERT_SUBJECT", "GATE_SUBJECT"]

ALERT_SUBJECT = "agentlog.alerts-value"
GATE_SUBJECT = "agentlog.gates-value"


class AlertCodec(AvroCodec):
    """Encodes `Alert`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = ALERT_SUBJECT) -> None:
        super().__init__("Alert", registry=registry, subject=subject)

    def encode(self, alert: Alert) -> bytes:
        return self.encode_enveloped(alert.model_dump(), alert.kind)

    def decode(self, data: bytes) -> Alert:
        record = self.read_enveloped(data, ALERT_BODY_TYPES, what="alert")
        try:
            return Alert.model_validate(record)
        except ValueError as exc:
            raise DecodeError(f"alert does not validate: {exc}") from exc


class GateCodec(AvroCodec):
    """Encodes `GateVerdict`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = GATE_SUBJECT) -> None:
        super().__init__("GateVerdict", registry=registry, subject=subject)

    def encode(self, verdict: GateVerdict) -> bytes:
        return self.encode_record(verdict.model_dump())

    def decode(self, data: bytes) -> GateVerdict:
        record = self.read_record(data)
        try:
            return GateVerdict.model_validate(record)
        except ValueError as exc:
            raise DecodeError(f"gate verdict does not validate: {exc}") from exc
