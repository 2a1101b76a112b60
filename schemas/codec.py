"""Avro wire format of agentlog's records: events (`EventCodec`) and snapshots (`SnapshotCodec`,
in `schemas/snapshot_codec.py`), on one framing (`AvroCodec`).

Two framings, both decoded whatever the codec writes:

* Avro single-object encoding (the default, no server needed): `C3 01`, the schema's
  CRC-64-AVRO fingerprint (8 bytes, little-endian), then the Avro binary body.
* Confluent framing (when a Schema Registry is configured): `00`, the registry's schema id
  (4 bytes, big-endian), then the body.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from pydantic import BaseModel

from schemas.events import PAYLOAD_TYPES, Event

__all__ = [
    "AVRO_DIR", "HISTORY_DIR", "DecodeError", "AvroCodec", "EventCodec", "SchemaRegistry", "event_schema",
    "event_schema_json", "expanded_schema",
    "event_fingerprint", "schema_fingerprint", "SUBJECT", "MissingSchemasError", "released_schemas",
]

AVRO_DIR = Path(__file__).parent / "avro"
HISTORY_DIR = Path(__file__).parent / "history"
"""Every released version of the envelope schema, expanded: data written with any of them
must stay readable (BACKWARD compatibility, checked by the tests)."""
SUBJECT = "agentlog.events-value"
_SINGLE_OBJECT = b"\xc3\x01"
_CONFLUENT = b"\x00"
_NS = "agentlog."


class DecodeError(ValueError):
    """A record that is not an agentlog record this codec can read; the message says why."""


class MissingSchemasError(FileNotFoundError):
    """No released schema where there must be some: older records would not decode."""


def released_schemas(name: str = "Event") -> list[dict[str, Any]]:
    """Every released version of schema `agentlog.<name>` in `HISTORY_DIR`, oldest first."""
    versions = {int(m.group(1)): p for p in HISTORY_DIR.glob(f"agentlog.{name}.v*.avsc")
                if (m := re.fullmatch(rf"agentlog\.{name}\.v(\d+)\.avsc", p.name))}
    files = [versions[v] for v in sorted(versions)]
    if not files:
        # Without them, every record written with an earlier version is undecodable: refuse to start.
        raise MissingSchemasError(
            f"no released {name} schema (agentlog.{name}.v<N>.avsc) in {HISTORY_DIR}: records written "
            "with an earlier schema could not be decoded. An installed package lacks its package data "
            "(schemas/history/*.avsc); a checkout releases one with `python -m tests.golden.release`.")
    return [json.loads(f.read_text()) for f in files]


class SchemaRegistry(Protocol):
    """A Confluent-compatible Schema Registry (adapters live in `streams/`)."""

    def register(self, subject: str, schema_str: str) -> int: ...

    def schema_str(self, schema_id: int) -> str: ...


@cache
def expanded_schema(name: str) -> dict[str, Any]:
    """Schema `agentlog.<name>` with every named type it references inlined."""
    schema = load_schema(str(AVRO_DIR / f"agentlog.{name}.avsc"), _write_hint=False)
    assert isinstance(schema, dict)
    return schema


def event_schema() -> dict[str, Any]:
    """The envelope schema with every named type it references inlined."""
    return expanded_schema("Event")


def event_schema_json() -> str:
    """The self-contained schema, as a registry or another language's client wants it."""
    return json.dumps(event_schema(), separators=(",", ":"))


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def event_fingerprint() -> bytes:
    """CRC-64-AVRO fingerprint of the current schema, as single-object encoding writes it."""
    return schema_fingerprint(event_schema())


class AvroCodec:
    """Records of one schema (`agentlog.<name>`) to bytes and back, in either framing; records
    written with any released version of the schema stay readable."""

    def __init__(self, name: str, *, registry: SchemaRegistry | None, subject: str) -> None:
        """`registry`: write Confluent framing under `subject`; None: single-object encoding."""
        current = expanded_schema(name)
        self._schema = fastavro.parse_schema(current)
        self._registry = registry
        self._subject = subject
        self._writers_by_fp: dict[bytes, Any] = {schema_fingerprint(current): self._schema}
        self._writers_by_id: dict[int, Any] = {}
        for released in released_schemas(name):
            self.add_writer_schema(released)
        if registry is None:
            self._header = _SINGLE_OBJECT + schema_fingerprint(current)
        else:
            schema_id = registry.register(subject, json.dumps(current, separators=(",", ":")))
            self._writers_by_id[schema_id] = self._schema
            self._header = _CONFLUENT + struct.pack(">I", schema_id)

    def add_writer_schema(self, schema: dict[str, Any]) -> None:
        """Make records written with an older (or newer) schema readable."""
        self._writers_by_fp[schema_fingerprint(schema)] = fastavro.parse_schema(schema)

    def encode_record(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._schema, record)
        return out.getvalue()

    def encode_enveloped(self, record: dict[str, Any], body_type: str) -> bytes:
        """A record whose `body` is a union of records: the branch named by `body_type`."""
        return self.encode_record({**record, "body": (_NS + body_type, record["body"])})

    def read_enveloped(self, data: bytes, bodies: Mapping[str, type[BaseModel]], *,
                       what: str) -> dict[str, Any]:
        """The record with its union `body` validated as the branch it names; DecodeError for an
        unknown branch or a body that does not validate."""
        record = self.read_record(data)
        name, body = record["body"]
        model = bodies.get(str(name).removeprefix(_NS))
        if model is None:
            raise DecodeError(f"unknown {what} body {name!r}")
        try:
            return {**record, "body": model.model_validate(body)}
        except ValueError as exc:
            raise DecodeError(f"{what} does not validate: {exc}") from exc

    def read_record(self, data: bytes) -> dict[str, Any]:
        """The Avro record as a dict, unions as (record name, value)."""
        writer, body = self._writer_for(data)
        try:
            record: Any = fastavro.schemaless_reader(
                io.BytesIO(body), writer, self._schema,
                return_record_name=True, return_record_name_override=True,
            )
        except Exception as exc:  # fastavro raises several types for a damaged body
            raise DecodeError(f"Avro body does not decode: {exc!r}") from exc
        if not isinstance(record, dict):
            raise DecodeError("the Avro body is not a record")
        return record

    def _writer_for(self, data: bytes) -> tuple[Any, bytes]:
        if data[:2] == _SINGLE_OBJECT and len(data) >= 10:
            writer = self._writers_by_fp.get(data[2:10])
            if writer is None:
                raise DecodeError(f"unknown schema fingerprint {data[2:10].hex()}")
            return writer, data[10:]
        if data[:1] == _CONFLUENT and len(data) >= 5:
            (schema_id,) = struct.unpack(">I", data[1:5])
            return self._writer_by_id(schema_id), data[5:]
        raise DecodeError("not an agentlog record: no single-object or Confluent header")

    def _writer_by_id(self, schema_id: int) -> Any:
        writer = self._writers_by_id.get(schema_id)
        if writer is None:
            if self._registry is None:
                raise DecodeError(f"Confluent-framed record (schema id {schema_id}) but no registry")
            try:
                schema = json.loads(self._registry.schema_str(schema_id))
            except Exception as exc:  # the registry adapter's own errors
                raise DecodeError(f"schema id {schema_id} not found in the registry: {exc}") from exc
            writer = self._writers_by_id[schema_id] = fastavro.parse_schema(schema)
        return writer


class EventCodec(AvroCodec):
    """Encodes `Event`s to bytes and back."""

    def __init__(self, *, registry: SchemaRegistry | None = None, subject: str = SUBJECT) -> None:
        """`registry`: write Confluent framing under `subject`; None: single-object encoding."""
        super().__init__("Event", registry=registry, subject=subject)

    def encode(self, event: Event) -> bytes:
        record = event.model_dump()
        record["payload"] = (_NS + event.event_type, record["payload"])
        return self.encode_record(record)

    def decode_record(self, data: bytes) -> dict[str, Any]:
        """The Avro record as a dict (`payload` a dict too): the fast path for bulk readers."""
        record = self.read_record(data)
        name, payload = record["payload"]
        record["payload"] = payload
        if record["event_type"] != name.removeprefix(_NS):
            raise DecodeError(f"event_type {record['event_type']!r} but payload is {name}")
        return dict(record)

    def decode(self, data: bytes) -> Event:
        record = self.decode_record(data)
        if record["event_type"] not in PAYLOAD_TYPES:
            raise DecodeError(f"unknown event_type {record['event_type']!r}")
        try:
            return Event.model_validate(record)
        except ValueError as exc:
            raise DecodeError(f"event does not validate: {exc}") from exc
