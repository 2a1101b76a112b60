"""The poison suite: records no agentlog process can use, written with a plain Kafka producer on
the inbox and on the events topic, before and after every service is killed and restarted.

Each one is dead-lettered with its reason and where it came from, every service stays up (and
rebuilds its state past them after a restart), and ordinary runs still complete.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import fastavro
import pytest
from confluent_kafka import Producer

from schemas.codec import EventCodec
from schemas.events import Event, ResponseRequested, RunCompleted, ToolApproved, ToolExecuted
from streams.partitioning import partition_for
from tests.integration.test_log_contract import read_topic
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SERVICES = ("orchestrator", "planner", "guard", "executor", "responder", "sink", "gateway")
FOLDING = ("executor", "responder")
"""Workers that fold every event of their partitions, so every poison event reaches them."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("poison-home")) as s:
        yield s


def _event(payload, run_id: str, *, seq: int, event_type: str | None = None) -> Event:  # type: ignore[no-untyped-def]
    return Event.of(payload, run_id=run_id, seq=seq, event_id=str(uuid.uuid4()), tenant_id="default",
                    event_time=datetime.now(UTC), actor="attacker",
                    causation_id=str(uuid.uuid4()))


def _wrong_branch(codec: EventCodec, run_id: str) -> bytes:
    """Valid Avro whose payload branch is not the type its event_type names."""
    good = codec.encode(_event(RunCompleted(outcome="succeeded", tool_calls=0, cost_usd=0.0,
                                            duration_ms=1), run_id, seq=1))
    record = fastavro.schemaless_reader(io.BytesIO(good[10:]), codec._schema,
                                        return_record_name=True, return_record_name_override=True)
    record["event_type"] = "RunStarted"
    out = io.BytesIO()
    out.write(good[:10])
    fastavro.schemaless_writer(out, codec._schema, record)
    return out.getvalue()


def poison(codec: EventCodec, tag: str) -> dict[str, bytes | None]:
    """Run id (the record's key) -> value, one of each kind of unusable record."""
    approved = ToolApproved(step_id="s1", tool="send_email", input_json='{"to": "x@evil.io"}',
                            idempotency_key="x/s1", reason="forged", policy_version="v0")
    whole = codec.encode(_event(approved, f"{tag}-truncated", seq=1))
    return {
        f"{tag}-null": None,
        f"{tag}-empty": b"",
        f"{tag}-garbage": b"\x00\xff not avro at all",
        f"{tag}-truncated": whole[: len(whole) // 2],
        f"{tag}-wrong-branch": _wrong_branch(codec, f"{tag}-wrong-branch"),
        # Valid Avro of runs that cannot be: one that begins with an approval (a forged call
        # for the executor), one with a response request and no history.
        f"{tag}-impossible-approval": codec.encode(_event(approved, f"{tag}-impossible-approval", seq=1)),
        f"{tag}-impossible-response": codec.encode(_event(
            ResponseRequested(request_text="hi", observations=[]), f"{tag}-impossible-response", seq=3)),
    }


def inbox_poison(codec: EventCodec, tag: str) -> dict[str, bytes | None]:
    """The same kinds on the inbox, plus a result for a run that never existed."""
    kinds = {k: v for k, v in poison(codec, tag).items() if "impossible" not in k}
    kinds[f"{tag}-unknown-run"] = codec.encode(_event(
        ToolExecuted(step_id="s1", tool="search_docs", status="ok", duration_ms=1, cost_usd=0.0),
        f"{tag}-unknown-run", seq=0))
    return kinds


def _produce(stack: Stack, topic: str, records: dict[str, bytes | None]) -> None:
    p = Producer({"bootstrap.servers": stack.settings.bootstrap_servers, "partitioner": "murmur2_random"})
    for key, value in records.items():
        kind = "RunStarted" if "wrong-branch" in key else "ToolApproved"
        p.produce(topic, key=key.encode(), value=value, headers=[("event_type", kind.encode())],
                  partition=partition_for(key, stack.settings.partitions))
    assert p.flush(10) == 0


def _dead_letters(stack: Stack) -> dict[tuple[str, str], dict[str, str]]:
    """(key, service) -> the dead letter's headers."""
    out = {}
    for m in read_topic(stack, stack.settings.deadletter_topic):
        headers = {k: v.decode() for k, v in m.headers() or []}
        out[((m.key() or b"").decode(), headers["dlq.service"])] = headers
    return out


def _all_up(stack: Stack) -> bool:
    services = stack.cli_json("status")["services"]
    return all(services[s]["alive"] for s in SERVICES)


def _a_run_completes(stack: Stack, text: str) -> None:
    out = stack.cli_json("submit", text, "--wait", "--timeout", "90")
    assert out["status"] == "completed", out


def test_poison_on_the_inbox_and_the_log_is_dead_lettered_and_nothing_stops(stack: Stack):
    codec = EventCodec()
    events, inbox = poison(codec, "ev"), inbox_poison(codec, "in")
    _produce(stack, stack.settings.events_topic, events)
    _produce(stack, stack.settings.inbox_topic, inbox)
    _a_run_completes(stack, "What is our refund policy for annual plans?")

    def parked() -> dict[tuple[str, str], dict[str, str]] | None:
        dead = _dead_letters(stack)
        wanted = {(k, "orchestrator") for k in inbox} | {(k, s) for k in events for s in (*FOLDING, "sink")
                                                          if not (s == "sink" and "impossible" in k)}
        return dead if wanted <= set(dead) else None

    dead = eventually(parked, timeout=60, what="every poison record to be dead-lettered")
    for (key, service), headers in dead.items():
        topic = stack.settings.inbox_topic if key.startswith("in-") else stack.settings.events_topic
        assert headers["dlq.topic"] == topic and headers["dlq.reason"], (key, service, headers)
        assert int(headers["dlq.partition"]) == partition_for(key, stack.settings.partitions)
        assert int(headers["dlq.offset"]) >= 0
    reasons = {k: h["dlq.reason"] for (k, s), h in dead.items() if s in ("orchestrator", "executor")}
    assert reasons["in-null"].startswith("NULL value") and reasons["ev-null"].startswith("NULL value")
    assert reasons["in-empty"] == "empty value"
    assert reasons["in-garbage"].startswith("undecodable")
    assert reasons["ev-truncated"].startswith("undecodable")
    assert "payload is agentlog.RunCompleted" in reasons["in-wrong-branch"]
    assert "begins with ToolApproved" in reasons["ev-impossible-approval"]
    assert "unknown run" in reasons["in-unknown-run"]
    assert _all_up(stack)
    before = len(dead)

    # Every service killed and restarted: each rebuilds its state past the poison on the log.
    stack.kill(*SERVICES)
    stack.cli("up")
    assert _all_up(stack)
    _a_run_completes(stack, "How many customers do we have in Germany?")

    # More poison after the restarts, then one more restart of everything.
    _produce(stack, stack.settings.events_topic, poison(codec, "ev2"))
    _produce(stack, stack.settings.inbox_topic, inbox_poison(codec, "in2"))
    _a_run_completes(stack, "Open a ticket: badge reader broken on floor 3")
    eventually(lambda: {("ev2-null", "executor"), ("in2-null", "orchestrator")} <= set(_dead_letters(stack)),
               what="the second round to be dead-lettered")
    stack.kill(*SERVICES)
    stack.cli("up")
    _a_run_completes(stack, "What are the API rate limits?")
    assert _all_up(stack)
    # A rebuild skips what it cannot fold without parking it again: each record once per service.
    after = _dead_letters(stack)
    assert len(after) >= before
    keys = [(m.key(), dict(m.headers())["dlq.service"])
            for m in read_topic(stack, stack.settings.deadletter_topic)]
    assert len(keys) == len(set(keys)), "a record was dead-lettered twice by one service"
