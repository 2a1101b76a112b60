"""Release the current schemas: `python -m tests.golden.release`.

For the events, the snapshots, the alerts, the gate verdicts and the memory log's changes, when
the current schema is not released yet, writes
`schemas/history/agentlog.<Name>.v<N+1>.avsc` (the schema with every type inlined) and
`tests/golden/<events|snapshots|alerts|gates|memory>-v<N+1>.avro` (one record of each type
written with it), which
the schema evolution tests read with every later schema. Refuses when both are released.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import fastavro
from fastavro.schema import parse_schema

from processors.snapshot import to_snapshot
from processors.state import fold
from schemas.alerts import Alert, AlertRaised, AlertResolved, GateVerdict, alert_id
from schemas.codec import HISTORY_DIR, EventCodec, expanded_schema, schema_fingerprint
from schemas.memory_log import KeptMemory, MemoryChange, MemoryForgotten, MemoryKept, MemoryOptedIn
from schemas.snapshots import Checkpoint, FinishedRunsPage, Snapshot
from tests.factories import T0, a_run, envelope, one_of_each

GOLDEN = Path(__file__).parent
RELEASES = {"Event": "events", "Snapshot": "snapshots", "Alert": "alerts", "GateVerdict": "gates",
            "MemoryChange": "memory"}


def golden_records(name: str) -> list[dict[str, object]]:
    """One record of each kind of schema `name`, as Avro dicts (unions as name, value)."""
    if name == "Event":
        records = []
        for seq, payload in enumerate(one_of_each(), 1):
            record = envelope(payload, seq=seq).model_dump()
            record["payload"] = (f"agentlog.{type(payload).__name__}", record["payload"])
            records.append(record)
        return records
    if name == "Alert":
        return [_alert_record(body) for body in (
            AlertRaised(value=42.0, threshold=30.0, baseline=10.0, runs=25),
            AlertRaised(value=None, threshold=None, baseline=None, runs=0),
            AlertResolved(value=8.0, resolved_window_start=T0))]
    if name == "GateVerdict":
        return [GateVerdict(verdict_id="v1", candidate="prompt-v2", passed=False, at=T0,
                            failed_checks=["quality: 0.700 (>= 0.82)"], scores="scores.json").model_dump(),
                GateVerdict(verdict_id="v2", candidate="prompt-v2", passed=True, at=T0, failed_checks=[],
                            scores="scores.json").model_dump()]
    if name == "MemoryChange":
        return [_memory_record(body) for body in (
            MemoryOptedIn(default_ttl_s=86_400),
            MemoryKept(memories=[KeptMemory(memory_id="code", subject="", text="Our project code is ORION-7",
                                            created_at=T0, expires_at=T0, source="import", run_id="",
                                            metadata="{}")]),
            MemoryForgotten(scope="subject", memory_id=None, subject="refunds", memory_ids=["r1", "r2"]))]
    events = a_run()
    codec = EventCodec()
    bodies = [to_snapshot(fold(events[:7]), codec), to_snapshot(fold(events), codec),
              Checkpoint(live_runs=2), FinishedRunsPage(page=0, run_digests=bytes(range(32)))]
    out = []
    for body in bodies:
        snapshot = Snapshot(service="orchestrator", partition=1, covers=42, written_at=T0, body=body)
        record = snapshot.model_dump()
        record["body"] = (f"agentlog.{type(body).__name__}", record["body"])
        out.append(record)
    return out


def _alert_record(body: AlertRaised | AlertResolved) -> dict[str, object]:
    alert = Alert(alert_id=alert_id("violation_rate", "tenant:acme", T0), rule="violation_rate",
                  severity="page", scope="tenant:acme", window_start=T0, window_end=T0, at=T0,
                  summary="violation rate 42 per 100 runs", body=body)
    record = alert.model_dump()
    record["body"] = (f"agentlog.{alert.kind}", record["body"])
    return record


def _memory_record(body: MemoryOptedIn | MemoryKept | MemoryForgotten) -> dict[str, object]:
    change = MemoryChange(change_id="c1", tenant_id="acme", at=T0, actor="cli:ops", body=body)
    record = change.model_dump()
    record["body"] = (f"agentlog.{change.kind}", record["body"])
    return record


def release(name: str) -> str | None:
    """Release schema `name` if it changed; what was done, or None."""
    released = {int(m.group(1)): p for p in HISTORY_DIR.glob(f"agentlog.{name}.v*.avsc")
                if (m := re.search(r"\.v(\d+)\.avsc$", p.name))}
    schema = expanded_schema(name)
    if any(schema_fingerprint(json.loads(p.read_text())) == schema_fingerprint(schema)
           for p in released.values()):
        return None
    version = max(released, default=0) + 1
    (HISTORY_DIR / f"agentlog.{name}.v{version}.avsc").write_text(json.dumps(schema, indent=2) + "\n")
    records = golden_records(name)
    with (GOLDEN / f"{RELEASES[name]}-v{version}.avro").open("wb") as f:
        fastavro.writer(f, parse_schema(schema), records)
    return f"released agentlog.{name} v{version} ({len(records)} golden records)"


def main() -> int:
    done = [line for name in RELEASES if (line := release(name)) is not None]
    if not done:
        print("the current schemas are already released", file=sys.stderr)
        return 1
    print("\n".join(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
