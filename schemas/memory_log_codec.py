"""Avro wire format of the memory log's records (`agentlog.MemoryChange`), framed like events."""

from __future__ import annotations

from schemas.codec import AvroCodec, DecodeError, SchemaRegistry
from schemas.memory_log import MEMORY_CHANGE_TYPES, MemoryChange

__all__ = ["MemoryChangeCodec", "MEMORY_SUBJECT"]

MEMORY_SUBJECT = "agentlog.memory-value"


class MemoryChangeCodec(AvroCodec):
    """Encodes `MemoryChange`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = MEMORY_SUBJECT) -> None:
        super().__init__("MemoryChange", registry=registry, subject=subject)

    def encode(self, change: MemoryChange) -> bytes:
        return self.encode_enveloped(change.model_dump(), change.kind)

    def decode(self, data: bytes) -> MemoryChange:
        record = self.read_enveloped(data, MEMORY_CHANGE_TYPES, what="memory change")
        try:
            return MemoryChange.model_validate(record)
        except ValueError as exc:
            raise DecodeError(f"memory change does not validate: {exc}") from exc
