"""The Python mirrors and the .avsc files describe the same records, field for field."""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo, PydanticUndefined

from schemas.alerts import ALERT_BODY_TYPES
from schemas.codec import AVRO_DIR
from schemas.events import PAYLOAD_TYPES, Event, Record, _AvroLong
from schemas.memory_log import MEMORY_CHANGE_TYPES
from schemas.snapshots import BODY_TYPES, Snapshot

_PRIMITIVE = {str: "string", float: "double", bool: "boolean", bytes: "bytes"}


def _avro_type(annotation: object, info: FieldInfo | None = None) -> object:
    metadata = list(info.metadata) if info else []
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata += extra
    if annotation is int:
        return "long" if any(isinstance(m, _AvroLong) for m in metadata) else "int"
    if annotation is datetime:
        return {"type": "long", "logicalType": "timestamp-millis"}
    if annotation in _PRIMITIVE:
        return _PRIMITIVE[annotation]  # type: ignore[index]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            return ["null", _avro_type(inner)]
        return [_avro_type(a) for a in args]
    if origin is list:
        return {"type": "array", "items": _avro_type(typing.get_args(annotation)[0])}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"agentlog.{annotation.__name__}"
    raise AssertionError(f"no Avro mapping for {annotation!r}")


def _mirror_fields(model: type[Record]) -> list[dict[str, object]]:
    hints = typing.get_type_hints(model, include_extras=True)
    fields = []
    for name, info in model.model_fields.items():
        entry: dict[str, object] = {"name": name, "type": _avro_type(hints[name], info)}
        if info.default is not PydanticUndefined:
            entry["default"] = info.default
        fields.append(entry)
    return fields


def _avsc_fields(name: str) -> list[dict[str, object]]:
    schema = json.loads((AVRO_DIR / f"agentlog.{name}.avsc").read_text())
    assert schema["name"] == name and schema["namespace"] == "agentlog"
    return [{k: v for k, v in f.items() if k != "doc"} for f in schema["fields"]]


def _all_records() -> list[type[Record]]:
    seen: dict[str, type[Record]] = {}

    def visit(model: type[Record]) -> None:
        seen[model.__name__] = model
        for hint in typing.get_type_hints(model).values():
            nested = [a for h in typing.get_args(hint) for a in typing.get_args(h)]
            for arg in [hint, *typing.get_args(hint), *nested]:
                if isinstance(arg, type) and issubclass(arg, Record) and arg.__name__ not in seen:
                    visit(arg)

    for model in [*PAYLOAD_TYPES.values(), *BODY_TYPES.values()]:
        visit(model)
    return list(seen.values())


@pytest.mark.parametrize("model", _all_records(), ids=lambda m: m.__name__)
def test_mirror_matches_avsc(model):
    assert _mirror_fields(model) == _avsc_fields(model.__name__)


def test_envelope_matches_avsc_and_union_order():
    avsc = _avsc_fields("Event")
    mirror = _mirror_fields(Event)
    payload_avsc = next(f for f in avsc if f["name"] == "payload")
    assert payload_avsc["type"] == [f"agentlog.{n}" for n in PAYLOAD_TYPES]
    assert [f for f in mirror if f["name"] != "payload"] == [f for f in avsc if f["name"] != "payload"]


def test_every_avsc_file_has_a_mirror():
    files = {p.name.removeprefix("agentlog.").removesuffix(".avsc") for p in AVRO_DIR.glob("*.avsc")}
    alerts = {*ALERT_BODY_TYPES, "Alert", "GateVerdict"}  # mirrored in schemas/alerts.py
    memory_log = {*MEMORY_CHANGE_TYPES, "MemoryChange", "KeptMemory"}  # in schemas/memory_log.py
    assert files == {m.__name__ for m in _all_records()} | {"Event", "Snapshot"} | alerts | memory_log


def test_snapshot_envelope_matches_avsc_and_union_order():
    avsc = _avsc_fields("Snapshot")
    body = next(f for f in avsc if f["name"] == "body")
    assert body["type"] == [f"agentlog.{n}" for n in BODY_TYPES]
    mirrored = [f for f in _mirror_fields(Snapshot) if f["name"] != "body"]
    assert mirrored == [f for f in avsc if f["name"] != "body"]
