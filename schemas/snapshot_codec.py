"""Avro wire format of snapshot records (`agentlog.Snapshot`), framed like events."""

from __future__ import annotations

from schemas.codec import AvroCodec, DecodeError, SchemaRegistry
from schemas.snapshots import BODY_TYPES, Snapshot

__all__ = ["SnapshotCodec", "SNAPSHOT_SUBJECT"]

SNAPSHOT_SUBJECT = "agentlog.snapshots-value"


class SnapshotCodec(AvroCodec):
    """Encodes `Snapshot`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = SNAPSHOT_SUBJECT) -> None:
        super().__init__("Snapshot", registry=registry, subject=subject)

    def encode(self, snapshot: Snapshot) -> bytes:
        return self.encode_enveloped(snapshot.model_dump(), type(snapshot.body).__name__)

    def decode(self, data: bytes) -> Snapshot:
        record = self.read_enveloped(data, BODY_TYPES, what="snapshot")
        try:
            return Snapshot.model_validate(record)
        except ValueError as exc:
            raise DecodeError(f"snapshot does not validate: {exc}") from exc
