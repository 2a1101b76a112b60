"""What other services rely on: the log's keys, headers and encoding, ClickHouse mirroring it
exactly, dead letters, and a restarted orchestrator rebuilding from the log."""

from __future__ import annotations

import io
from collections import Counter

import fastavro
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from fastavro.schema import load_schema

from schemas.codec import AVRO_DIR, EventCodec
from streams.partitioning import partition_for
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def read_topic(stack: Stack, topic: str) -> list:
    """Every committed record of `topic`, with an ordinary confluent-kafka consumer."""
    c = Consumer({"bootstrap.servers": stack.settings.bootstrap_servers, "group.id": "contract-test",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof = [], set()
    while len(eof) < len(parts):
        for m in c.consume(500, timeout=1):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                eof.add(m.partition())
            else:
                out.append(m)
    c.close()
    return out


def test_every_event_is_keyed_by_run_with_a_type_header_and_decodes_with_the_avsc_files(stack: Stack):
    run_id = stack.cli_json("submit", "How many products do we sell?", "--wait")["run_id"]
    # An independent reader: fastavro and the .avsc files, none of agentlog's code. (Other tests
    # write records no agentlog process wrote onto the log: the run's own records are read.)
    schema = fastavro.parse_schema(load_schema(str(AVRO_DIR / "agentlog.Event.avsc")))
    messages = [m for m in read_topic(stack, stack.settings.events_topic) if m.key() == run_id.encode()]
    assert len(messages) >= 6
    seqs: dict[str, list[int]] = {}
    traces: set[bytes] = set()
    for m in messages:
        value = m.value()
        assert value[:2] == b"\xc3\x01"  # Avro single-object encoding
        record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, return_record_name=True,
                                            return_record_name_override=True)
        assert m.key().decode() == record["run_id"]
        assert dict(m.headers())["event_type"].decode() == record["event_type"]
        traces.add(dict(m.headers())["traceparent"])
        if record["event_type"] == "RunStarted":
            started_trace = record["payload"][1]["traceparent"]
        assert record["payload"][0] == "agentlog." + record["event_type"]
        assert m.partition() == partition_for(record["run_id"], stack.settings.partitions)
        seqs.setdefault(record["run_id"], []).append(record["seq"])
    for run_id, s in seqs.items():
        assert s == list(range(1, len(s) + 1)), f"run {run_id} has seq {s}"
    # Every record of the run carries the W3C trace context its RunStarted records.
    assert traces == {started_trace.encode()}


def test_clickhouse_holds_exactly_the_events_of_the_log_each_once(stack: Stack):
    stack.cli_json("submit", "Open a ticket: badge reader broken on floor 3", "--wait")

    codec = EventCodec()

    def decodes(value: bytes | None) -> bool:
        try:
            codec.decode(value or b"")
            return True
        except ValueError:
            return False  # written onto the log by another test: dead-lettered, not stored

    def log() -> Counter:
        return Counter((m.key().decode(), m.partition(), m.offset())
                       for m in read_topic(stack, stack.settings.events_topic) if decodes(m.value()))

    def stored() -> Counter:
        rows = stack.sql("SELECT run_id, source_partition, source_offset FROM agent_events")
        return Counter((r["run_id"], r["source_partition"], r["source_offset"]) for r in rows)

    # Every (partition, offset) of the log once, and nothing else: a duplicate would count 2.
    eventually(lambda: stored() == log(), what="ClickHouse to hold exactly the log")
    per_run = stack.sql("SELECT run_id, count() AS n, uniqExact(seq) AS seqs, max(seq) AS top "
                        "FROM agent_events GROUP BY run_id")
    assert per_run and all(r["n"] == r["seqs"] == r["top"] for r in per_run)


def test_an_undecodable_inbox_record_is_dead_lettered_and_the_orchestrator_goes_on(stack: Stack):
    p = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    p.produce(stack.settings.inbox_topic, key=b"garbage-run", value=b"{not avro}",
              headers=[("event_type", b"RunRequested")])
    p.flush(10)
    out = stack.cli_json("submit", "What is the on-call escalation process?", "--wait")
    assert out["status"] == "completed"
    dead = eventually(lambda: [m for m in read_topic(stack, stack.settings.deadletter_topic)
                               if m.key() == b"garbage-run"], what="the dead letter")
    headers = dict(dead[0].headers())
    assert headers["dlq.service"] == b"orchestrator" and b"undecodable" in headers["dlq.reason"]
    assert dead[0].value() == b"{not avro}"  # nothing is lost: the record itself is kept


def test_a_killed_orchestrator_is_restarted_by_up_and_rebuilds_runs_from_the_log(stack: Stack):
    parked = stack.cli_json("submit", "Email the weekly report to partner@example.org", "--wait")
    assert parked["status"] == "awaiting_approval"
    stack.kill("orchestrator")
    started = stack.cli("up").stdout
    assert "started orchestrator" in started and "planner" not in started.split("started")[1].split("·")[0]
    # The rebuilt state still knows the parked call, so the approval continues that run.
    stack.cli("approvals", "approve", parked["run_id"], "--approver", "ops")
    run = eventually(
        lambda: (r := stack.cli_json("runs", "show", parked["run_id"]))["status"] == "completed" and r,
        what="the run to finish after the restart")
    assert [e["seq"] for e in run["events"]] == list(range(1, len(run["events"]) + 1))
    assert [e["event_type"] for e in run["events"]].count("RunStarted") == 1
