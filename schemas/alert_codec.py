"""Avro wire format of alert records (`agentlog.Alert`) and gate verdicts (`agentlog.GateVerdict`),
framed like events."""

from __future__ import annotations

from typing import Any

from schemas.alerts import ALERT_BODY_TYPES, Alert, GateVerdict
from schemas.codec import _NS, AvroCodec, DecodeError, SchemaRegistry

__all__ = ["AlertCodec", "GateCodec", "ALERT_SUBJECT", "GATE_SUBJECT"]

ALERT_SUBJECT = "agentlog.alerts-value"
GATE_SUBJECT = "agentlog.gates-value"


class AlertCodec(AvroCodec):
    """Encodes `Alert`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = ALERT_SUBJECT) -> None:
        super().__init__("Alert", registry=registry, subject=subject)

    def encode(self, alert: Alert) -> bytes:
        record: dict[str, Any] = alert.model_dump()
        record["body"] = (_NS + alert.kind, record["body"])
        return self.encode_record(record)

    def decode(self, data: bytes) -> Alert:
        record = self.read_record(data)
        name, body = record["body"]
        model = ALERT_BODY_TYPES.get(str(name).removeprefix(_NS))
        if model is None:
            raise DecodeError(f"unknown alert body {name!r}")
        try:
            return Alert.model_validate({**record, "body": model.model_validate(body)})
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
