"""Alert records and gate verdicts: mirrors agree with their .avsc files, records round-trip,
and the released golden records stay readable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest

from schemas.alert_codec import AlertCodec, GateCodec
from schemas.alerts import ALERT_BODY_TYPES, Alert, AlertRaised, AlertResolved, GateVerdict, alert_id
from schemas.codec import DecodeError, expanded_schema
from tests.unit.test_schema_mirror import _avsc_fields, _mirror_fields

GOLDEN = Path(__file__).parents[1] / "golden"
T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("model", [*ALERT_BODY_TYPES.values(), GateVerdict], ids=lambda m: m.__name__)
def test_mirror_matches_avsc(model):
    assert _mirror_fields(model) == _avsc_fields(model.__name__)


def test_alert_envelope_matches_avsc_and_union_order():
    avsc = _avsc_fields("Alert")
    assert next(f for f in avsc if f["name"] == "body")["type"] == [f"agentlog.{n}" for n in ALERT_BODY_TYPES]
    mirrored = [f for f in _mirror_fields(Alert) if f["name"] != "body"]
    assert mirrored == [f for f in avsc if f["name"] != "body"]


def _alert(body: AlertRaised | AlertResolved) -> Alert:
    return Alert(alert_id=alert_id("r", "tenant:a", T), rule="r", severity="page", scope="tenant:a",
                 window_start=T, window_end=T, at=T, summary="s", body=body)


@pytest.mark.parametrize("body", [AlertRaised(value=1.5, threshold=1.0, baseline=0.3, runs=20),
                                  AlertResolved(value=None, resolved_window_start=T)])
def test_alerts_round_trip(body):
    codec = AlertCodec()
    alert = _alert(body)
    assert codec.decode(codec.encode(alert)) == alert


def test_a_gate_verdict_round_trips_and_garbage_is_a_decode_error():
    codec = GateCodec()
    verdict = GateVerdict(verdict_id="v", candidate="c", passed=False, at=T, failed_checks=["q"], scores="x")
    assert codec.decode(codec.encode(verdict)) == verdict
    with pytest.raises(DecodeError):
        codec.decode(b"\x00garbage")
    with pytest.raises(DecodeError):
        AlertCodec().decode(codec.encode(verdict))  # another schema's fingerprint


def test_the_alert_id_depends_on_rule_scope_and_window_only():
    assert alert_id("r", "tenant:a", T) == alert_id("r", "tenant:a", T)
    assert len({alert_id("r", "tenant:a", T), alert_id("r", "tenant:b", T), alert_id("q", "tenant:a", T),
                alert_id("r", "tenant:a", T.replace(hour=13))}) == 4
    raised, resolved = _alert(AlertRaised(value=1, threshold=1, baseline=1, runs=1)), _alert(
        AlertResolved(value=1, resolved_window_start=T))
    assert raised.delivery_id != resolved.delivery_id and raised.alert_id == resolved.alert_id


@pytest.mark.parametrize(("name", "schema"), [("alerts", "Alert"), ("gates", "GateVerdict")])
def test_golden_records_stay_readable_with_the_current_schema(name, schema):
    files = sorted(GOLDEN.glob(f"{name}-v*.avro"))
    assert files, f"no golden {name} records: run python -m tests.golden.release"
    for path in files:
        with path.open("rb") as f:
            records = list(fastavro.reader(f, reader_schema=expanded_schema(schema), return_record_name=True))
        if schema == "GateVerdict":
            assert {GateVerdict.model_validate(r).passed for r in records} == {True, False}
            continue
        alerts = [Alert.model_validate({**r, "body": ALERT_BODY_TYPES[r["body"][0].removeprefix("agentlog.")]
                                        .model_validate(r["body"][1])}) for r in records]
        assert {a.kind for a in alerts} == {"AlertRaised", "AlertResolved"}
