"""Schemas evolve BACKWARD-compatibly: data written with any released schema stays readable."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas.codec import (
    HISTORY_DIR,
    EventCodec,
    event_fingerprint,
    event_schema,
    expanded_schema,
    schema_fingerprint,
)
from schemas.events import Event
from schemas.snapshot_codec import SnapshotCodec
from schemas.snapshots import BODY_TYPES
from tests.factories import envelope, one_of_each

GOLDEN = Path(__file__).parents[1] / "golden"
RELEASED = sorted(HISTORY_DIR.glob("agentlog.Event.v*.avsc"),
                  key=lambda p: int(re.search(r"\.v(\d+)\.avsc$", p.name).group(1)))


def test_the_current_schema_is_released():
    fingerprints = [schema_fingerprint(json.loads(p.read_text())) for p in RELEASED]
    assert event_fingerprint() in fingerprints, (
        "agentlog.Event changed: add schemas/history/agentlog.Event.v<N+1>.avsc (the expanded "
        "schema) and tests/golden/events-v<N+1>.avro (one event of each type written with it)")


@pytest.mark.parametrize("released", RELEASED, ids=lambda p: p.name)
def test_data_written_with_a_released_schema_decodes_with_the_current_one(released):
    version = re.search(r"\.(v\d+)\.avsc$", released.name).group(1)
    golden = GOLDEN / f"events-{version}.avro"
    with golden.open("rb") as f:
        reader = fastavro.reader(f, reader_schema=parse_schema(event_schema()),
                                 return_record_name=True, return_record_name_override=True)
        assert reader.writer_schema is not None
        records = list(reader)
    assert len(records) >= 20
    for record in records:
        record["payload"] = record["payload"][1]
        assert Event.model_validate(record).event_type == record["event_type"]


@pytest.mark.parametrize("released", RELEASED, ids=lambda p: p.name)
def test_single_object_records_written_with_a_released_schema_decode(released):
    schema = json.loads(released.read_text())
    event = envelope(one_of_each()[2])
    record = event.model_dump()
    record["payload"] = ("agentlog.PlanGenerated", record["payload"])
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parse_schema(schema), record)
    data = b"\xc3\x01" + schema_fingerprint(schema) + body.getvalue()
    assert EventCodec().decode(data) == event


SNAPSHOTS_RELEASED = sorted(HISTORY_DIR.glob("agentlog.Snapshot.v*.avsc"),
                            key=lambda p: int(re.search(r"\.v(\d+)\.avsc$", p.name).group(1)))


def test_the_current_snapshot_schema_is_released():
    fingerprints = [schema_fingerprint(json.loads(p.read_text())) for p in SNAPSHOTS_RELEASED]
    assert schema_fingerprint(expanded_schema("Snapshot")) in fingerprints, (
        "agentlog.Snapshot changed: release it with `python -m tests.golden.release`")


@pytest.mark.parametrize("released", SNAPSHOTS_RELEASED, ids=lambda p: p.name)
def test_snapshots_written_with_a_released_schema_decode_with_the_current_one(released):
    version = re.search(r"\.(v\d+)\.avsc$", released.name).group(1)
    schema = json.loads(released.read_text())
    with (GOLDEN / f"snapshots-{version}.avro").open("rb") as f:
        records = list(fastavro.reader(f, return_record_name=True, return_record_name_override=True))
    assert {r["body"][0] for r in records} == {f"agentlog.{n}" for n in BODY_TYPES}
    codec = SnapshotCodec()
    for record in records:
        # As a restarted processor meets it: single-object encoded with the released schema.
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parse_schema(schema), record)
        snapshot = codec.decode(b"\xc3\x01" + schema_fingerprint(schema) + body.getvalue())
        assert f"agentlog.{type(snapshot.body).__name__}" == record["body"][0]
