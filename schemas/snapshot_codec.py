"""Avro wire format of snapshot records (`agentlog.Snapshot`), framed like events."""

from __future__ import annotations

from typing import Any

from schemas.codec import _NS, AvroCodec, DecodeError, SchemaRegistry
from schemas.snapshots import BODY_TYPES, Snapshot

__all__ = ["SnapshotCodec", "SNAPSHOT_SUBJECT"]

SNAPSHOT_SUBJECT = "agentlog.snapshots-value"


class SnapshotCodec(AvroCodec):
    """Encodes `Snapshot`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = SNAPSHOT_SUBJECT) -> None:
        super().__init__("Snapshot", registry=registry, subject=subject)

    def encode(self, snapshot: Snapshot) -> bytes:
        record: dict[str, Any] = snapshot.model_dump()
        record["body"] = (_NS + type(snapshot.body).__name__, record["body"])
        return self.encode_record(record)

    def decode(self, data: bytes) -> Snapshot:
        record = self.read_record(data)
        name, body = record["body"]
        model = BODY_TYPES.get(str(name).removeprefix(_NS))
        if model is None:
            raise DecodeError(f"unknown snapshot body {name!r}")
        try:
            return Snapshot.model_validate({**record, "body": model.model_validate(body)})
        except ValueError as exc:
            raise DecodeError(f"snapshot does not validate: {exc}") from exc
