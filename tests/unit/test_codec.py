"""The wire format: every event type round-trips, both framings, damaged input is refused."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest

from schemas import codec as codec_module
from schemas.codec import (
    DecodeError,
    EventCodec,
    MissingSchemasError,
    event_fingerprint,
    event_schema,
    released_schemas,
)
from streams.kafka import ConfluentRegistry
from tests.factories import envelope, one_of_each


@pytest.mark.parametrize("payload", one_of_each(), ids=lambda p: type(p).__name__)
def test_every_event_type_round_trips_in_single_object_encoding(payload):
    codec = EventCodec()
    event = envelope(payload, causation_id="cause-1")
    data = codec.encode(event)
    assert data[:2] == b"\xc3\x01" and data[2:10] == event_fingerprint()
    assert codec.decode(data) == event


def test_single_object_body_is_plain_avro_readable_by_any_client():
    event = envelope(one_of_each()[1])
    data = EventCodec().encode(event)
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(event_schema()))
    assert record["run_id"] == event.run_id and record["payload"]["text"] == event.payload.text


def test_fingerprint_is_crc64_avro_of_the_canonical_form():
    # The Avro specification's CRC-64-AVRO of the schema "int" is 0x7275d51a3f395c8f (LE bytes).
    from fastavro.schema import fingerprint

    assert fingerprint('"int"', "CRC-64-AVRO") == "8f5c393f1ad57572"
    assert len(event_fingerprint()) == 8


def _mock_registry() -> ConfluentRegistry:
    return ConfluentRegistry("mock://agentlog-test")


def test_confluent_framing_with_mock_registry_round_trips_every_type():
    registry = _mock_registry()
    codec = EventCodec(registry=registry)
    for payload in one_of_each():
        data = codec.encode(envelope(payload))
        assert data[:1] == b"\x00"
        schema_id = struct.unpack(">I", data[1:5])[0]
        assert registry.schema_str(schema_id)
        assert codec.decode(data).payload == payload


def test_a_separate_reader_decodes_confluent_framing_by_asking_the_registry():
    registry = _mock_registry()
    data = EventCodec(registry=registry).encode(envelope(one_of_each()[0]))
    reader = EventCodec(registry=registry)  # another consumer of the same registry
    assert reader.decode(data).event_type == "RunRequested"
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert json.loads(registry.schema_str(schema_id)) == event_schema()


def test_a_codec_without_registry_refuses_confluent_framing_with_the_reason():
    registry = _mock_registry()
    framed = EventCodec(registry=registry).encode(envelope(one_of_each()[0]))
    with pytest.raises(DecodeError, match="no registry"):
        EventCodec().decode(framed)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "no single-object"),
    (b"{\"run_id\": 1}", "no single-object"),
    (b"\xc3\x01" + b"\x00" * 8 + b"abc", "unknown schema fingerprint"),
])
def test_foreign_bytes_are_refused_with_a_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        EventCodec().decode(data)


def test_truncated_body_is_a_decode_error_not_a_crash():
    data = EventCodec().encode(envelope(one_of_each()[2]))
    with pytest.raises(DecodeError):
        EventCodec().decode(data[:-7])


def test_payload_type_must_match_event_type():
    codec = EventCodec()
    event = envelope(one_of_each()[8])  # ApprovalGranted
    record = event.model_dump()
    record["event_type"] = "ApprovalDenied"  # same shape, other meaning
    out = io.BytesIO()
    out.write(data_header := codec.encode(event)[:10])
    record["payload"] = ("agentlog.ApprovalGranted", record["payload"])
    fastavro.schemaless_writer(out, fastavro.parse_schema(event_schema()), record)
    assert out.getvalue()[:10] == data_header
    with pytest.raises(DecodeError, match=r"payload is agentlog\.ApprovalGranted"):
        codec.decode(out.getvalue())


def test_a_codec_without_released_schemas_refuses_to_start_and_says_where_it_looked(monkeypatch, tmp_path):
    # Silently reading only the current schema would turn every older record into a dead letter.
    monkeypatch.setattr(codec_module, "HISTORY_DIR", tmp_path)
    (tmp_path / "agentlog.Event.avsc").write_text("{}")  # not a released version's name
    with pytest.raises(MissingSchemasError, match=rf"no released Event schema .* in {tmp_path}"):
        EventCodec()


def test_released_schemas_are_read_oldest_first(monkeypatch, tmp_path):
    monkeypatch.setattr(codec_module, "HISTORY_DIR", tmp_path)
    for version in (10, 2, 1):
        (tmp_path / f"agentlog.Event.v{version}.avsc").write_text(json.dumps({"doc": f"v{version}"}))
    assert [s["doc"] for s in released_schemas()] == ["v1", "v2", "v10"]
