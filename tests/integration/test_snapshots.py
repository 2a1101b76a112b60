"""State that follows live work: processors restore live runs from their snapshot topics and the
events after them, hold nothing of ended runs but a digest, and still tell a late record of an
ended run (dropped) from one of a run that never existed (dead-lettered)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from schemas.codec import EventCodec
from schemas.events import Event, RunRequested, ToolExecuted
from schemas.snapshot_codec import SnapshotCodec
from streams.partitioning import partition_for
from streams.runs import run_id_for
from tests.integration.test_log_contract import read_topic
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FOLDING = ("orchestrator", "executor", "responder")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("snapshots-home"), AGENTLOG_SNAPSHOT_INTERVAL_S="1") as s:
        yield s


def _restart(stack: Stack, *services: str) -> None:
    stack.kill(*services)
    stack.cli("up")


def _restored(stack: Stack, service: str) -> tuple[int, int, int]:
    """(live runs, snapshots, events after them) of the service's last restore, from its log."""
    log = stack.settings.path("logs", f"{service}.log").read_text()
    found = re.findall(r"(\d+) live runs from (\d+) snapshots and (\d+) events after them", log)
    assert found, f"{service} logged no restore"
    runs, snaps, tail = found[-1]
    return int(runs), int(snaps), int(tail)


def _stored(stack: Stack, service: str) -> dict[str, str]:
    """Key -> kind of the latest record per key of a service's snapshot topic."""
    codec, latest = SnapshotCodec(), {}
    for m in read_topic(stack, stack.settings.snapshots_topic(service)):
        key = m.key().decode()
        try:
            latest[key] = "tombstone" if m.value() is None else type(codec.decode(m.value()).body).__name__
        except ValueError:
            latest[key] = "unreadable"
    return latest


def _snapshot_seq(stack: Stack, service: str, run_id: str) -> int | None:
    """The seq of the latest snapshot of `run_id` on a service's topic (None: none readable)."""
    codec, seq = SnapshotCodec(), None
    for m in read_topic(stack, stack.settings.snapshots_topic(service)):
        if m.key() == run_id.encode():
            try:
                body = codec.decode(m.value()).body if m.value() is not None else None
            except ValueError:
                body = None
            seq = getattr(body, "seq", None)
    return seq


def _log_events(stack: Stack) -> int:
    return len(read_topic(stack, stack.settings.events_topic))


def test_processors_restore_live_runs_from_snapshots_and_only_the_events_after_them(stack: Stack):
    parked = [stack.cli_json("submit", f"Email the weekly report to partner{i}@example.org", "--wait")
              for i in range(3)]
    assert all(p["status"] == "awaiting_approval" for p in parked)
    done = [stack.cli_json("submit", f"What is our refund policy? ({i})", "--wait") for i in range(5)]
    assert all(d["status"] == "completed" for d in done)
    parked_ids = {p["run_id"] for p in parked}
    # A checkpoint (every second here) snapshots the waiting runs and forgets the ended ones.
    eventually(lambda: {k for k, v in _stored(stack, "orchestrator").items()
                        if v == "RunSnapshot"} == parked_ids, what="snapshots of exactly the live runs")
    stored = _stored(stack, "orchestrator")
    assert any(v == "FinishedRunsPage" for v in stored.values())
    assert all(stored.get(d["run_id"]) in (None, "tombstone") for d in done)

    _restart(stack, *FOLDING)
    total = _log_events(stack)
    runs, snaps, tail = _restored(stack, "orchestrator")
    assert runs == 3 and snaps == 3, (runs, snaps, tail)
    assert tail < total / 2, f"the restore folded {tail} of the log's {total} events"
    for service in ("executor", "responder"):
        assert _restored(stack, service)[0] == 3

    # The restored state is the real one: an approval continues the run where it waited.
    run_id = parked[0]["run_id"]
    stack.cli("approvals", "approve", run_id, "--approver", "ops")
    run = eventually(lambda: (r := stack.cli_json("runs", "show", run_id))["status"] == "completed" and r,
                     what="the approved run to finish after the restore")
    assert [e["seq"] for e in run["events"]] == list(range(1, len(run["events"]) + 1))


def test_a_late_result_of_an_ended_run_is_dropped_and_one_of_no_run_is_dead_lettered(stack: Stack):
    key = f"late-{uuid.uuid4()}"
    done = stack.cli_json("submit", "How many customers do we have in Germany?", "--idempotency-key", key,
                          "--wait")
    assert done["status"] == "completed"
    run = stack.cli_json("runs", "show", done["run_id"])
    # Its state is gone from memory after a restart: only its digest says it ended.
    eventually(lambda: done["run_id"] not in _stored(stack, "orchestrator")
               or _stored(stack, "orchestrator")[done["run_id"]] == "tombstone",
               what="the run to be forgotten")
    _restart(stack, "orchestrator")

    codec = EventCodec()
    approved = next(e for e in run["events"] if e["event_type"] == "ToolApproved")
    late = Event.of(ToolExecuted(step_id="s1", tool="query_sql", status="ok", duration_ms=5, cost_usd=0.0),
                    run_id=done["run_id"], seq=0, event_id=str(uuid.uuid4()),
                    causation_id=approved["event_id"],
                    tenant_id="default", event_time=datetime.now(UTC), actor="tool_executor")
    never = late.model_copy(update={"run_id": f"never-{uuid.uuid4()}"})
    again = Event.of(RunRequested(text="How many customers do we have in Germany?", idempotency_key=key),
                     run_id=run_id_for("default", key), seq=0, event_id=str(uuid.uuid4()),
                     tenant_id="default", event_time=datetime.now(UTC), actor="gateway")
    p = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    for record in (late, never, again):
        p.produce(stack.settings.inbox_topic, key=record.run_id.encode(), value=codec.encode(record),
                  partition=partition_for(record.run_id, stack.settings.partitions))
    assert p.flush(10) == 0
    dead = eventually(lambda: {m.key().decode() for m in read_topic(stack, stack.settings.deadletter_topic)}
                      & {never.run_id} or None, what="the record of no run to be dead-lettered")
    assert never.run_id in dead
    keys = {m.key().decode() for m in read_topic(stack, stack.settings.deadletter_topic)}
    assert done["run_id"] not in keys, "a late result of an ended run was dead-lettered"
    after = stack.cli_json("runs", "show", done["run_id"])
    assert after["events"] == run["events"], "the ended run changed"
    log = stack.settings.path("logs", "orchestrator.log").read_text()
    assert f"dropped ToolExecuted for {done['run_id']}: the run ended earlier" in log
    assert f"dropped RunRequested for {done['run_id']}: the run ended earlier" in log


def test_a_snapshot_that_cannot_be_read_is_rebuilt_from_the_runs_events(stack: Stack):
    parked = stack.cli_json("submit", "Email the invoice to billing@example.org", "--wait")
    assert parked["status"] == "awaiting_approval"
    run_id = parked["run_id"]
    seq = len(stack.cli_json("runs", "show", run_id)["events"])
    # Each processor's snapshot of the run as it waits (not one of an earlier step, which the
    # next checkpoint would replace, damaged record and all).
    eventually(lambda: all(_snapshot_seq(stack, s, run_id) == seq for s in FOLDING),
               what="the snapshots of the waiting run")
    first = min(m.offset() for m in read_topic(stack, stack.settings.events_topic)
                if m.key() == run_id.encode())
    p = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    for service in FOLDING:
        p.produce(stack.settings.snapshots_topic(service), key=run_id.encode(), value=b"\xc3\x01 damaged",
                  headers=[("first_offset", str(first).encode())],
                  partition=partition_for(run_id, stack.settings.partitions))
    assert p.flush(10) == 0
    _restart(stack, *FOLDING)
    log = stack.settings.path("logs", "orchestrator.log").read_text()
    assert re.search(rf"rebuilt from their events: \[[^\]]*'{run_id}'", log), log[-2000:]
    stack.cli("approvals", "approve", run_id, "--approver", "ops")
    run = eventually(lambda: (r := stack.cli_json("runs", "show", run_id))["status"] == "completed" and r,
                     what="the rebuilt run to finish")
    assert [e["seq"] for e in run["events"]] == list(range(1, len(run["events"]) + 1))
    eventually(lambda: _stored(stack, "orchestrator").get(run_id) in (None, "tombstone"),
               what="the rebuilt run's snapshot to be replaced, then tombstoned")
