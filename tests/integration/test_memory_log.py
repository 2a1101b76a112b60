"""The memory log on the real stack: every change of long-term memory (opt-in, imports, what a run
left, forgets, opt-out) is recorded, with who made it, before the store is touched; a store
rebuilt from it answers exactly as the original did, forgotten and expired memories absent."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors.memory.records import MemoryRecord
from schemas.memory_log import MemoryForgotten, MemoryKept, MemoryOptedIn
from sinks.memory_store import MemoryStore
from streams.memory_log import MemoryLog
from streams.memory_ops import LocalMemory
from tests.stack import Stack, eventually

QUERIES = ["what is our project code?", "who approves refunds", "where is the staging cluster",
           "contact for the audit", "deploy window"]


@pytest.fixture
def ops(stack: Stack, tmp_path):
    store = MemoryStore.connect(url=None, chdb_path=str(tmp_path / "memory"))
    log = MemoryLog(stack.settings)
    yield LocalMemory(store, log=log, actor="cli:tester")
    log.close()
    store.close()


def answers(ops: LocalMemory, tenant: str) -> dict[str, Any]:
    return {"search": {q: ops.search(tenant, q, k=10) for q in QUERIES},
            "by_subject": ops.search(tenant, "refunds", k=10, subject="refunds"),
            "list": ops.memories(tenant), "opted_in": ops.opted_in(tenant)}


def test_a_store_rebuilt_from_the_log_answers_as_the_original(ops: LocalMemory) -> None:
    tenant, gone = f"rebuild-{uuid.uuid4().hex[:8]}", f"optout-{uuid.uuid4().hex[:8]}"
    ops.opt_in(tenant, ttl_s=3600)
    soon = (datetime.now(UTC) - timedelta(seconds=3598)).isoformat()  # expires 2 s from now
    ops.import_lines(tenant, [
        {"id": "code", "text": "Our project code is ORION-7, ask jane.doe@acme.com"},
        {"id": "staging", "text": "The staging cluster runs in Frankfurt", "metadata": {"by": "ops"}},
        {"id": "audit", "text": "The audit contact is +49 30 901820", "subject": "audit"},
        {"id": "refund-1", "text": "Refunds above 500 EUR need finance", "subject": "refunds"},
        {"id": "refund-2", "text": "Refunds are paid within 5 days", "subject": "refunds"},
        {"id": "deploy", "text": "The deploy window is Tuesday", "created_at": soon},
    ])
    ops.forget(tenant, memory_id="audit")
    ops.forget(tenant, subject="refunds")
    ops.import_lines(tenant, [{"id": "refund-3", "text": "Refunds are approved by Maria",
                               "subject": "refunds"}])
    ops.import_lines(tenant, [{"id": "staging", "text": "The staging cluster moved to Dublin"}])  # replaces
    ops.opt_in(gone, ttl_s=60)
    ops.import_lines(gone, [{"text": "a fact of a tenant that leaves"}])
    ops.opt_out(gone)
    time.sleep(2.5)  # "deploy" expires (the log still holds it)
    before, before_gone = answers(ops, tenant), answers(ops, gone)
    assert {r["id"] for r in before["list"]} == {"code", "staging", "refund-3"}

    # The store drifts from its log: a memory written behind the log's back, and one lost.
    now = datetime.now(UTC)
    stray = MemoryRecord(tenant_id=tenant, memory_id="stray", text="The project code is FAKE-1", subject="",
                         created_at=now, expires_at=now + timedelta(hours=1))
    ops.store.put(tenant, [stray])
    ops.store.forget(tenant, memory_id="code")
    assert answers(ops, tenant) != before

    done = ops.rebuild(tenant)
    assert done == {"tenants": [{"tenant": tenant, "opted_in": True, "memories": 3}]}
    assert answers(ops, tenant) == before
    assert ops.store.count(tenant) == 3  # expired memories stay out of the rebuilt store
    hits = ops.search(tenant, "refunds audit contact deploy", k=10)
    assert not {"audit", "refund-1", "refund-2", "deploy", "stray"} & {h["id"] for h in hits}
    assert ops.search(tenant, "staging cluster", k=1)[0]["text"] == "The staging cluster moved to Dublin"

    assert ops.rebuild(gone) == {"tenants": [{"tenant": gone, "opted_in": False, "memories": 0}]}
    assert answers(ops, gone) == before_gone and before_gone["opted_in"] is False

    changes = list(ops.log.changes(tenant_id=tenant))
    assert [c.kind for c in changes] == ["MemoryOptedIn", "MemoryKept", "MemoryForgotten", "MemoryForgotten",
                                         "MemoryKept", "MemoryKept"]
    forgets = [c for c in changes if isinstance(c.body, MemoryForgotten)]
    assert [(c.body.scope, c.body.memory_id, c.body.subject, c.body.memory_ids) for c in forgets] == [
        ("memory", "audit", None, ["audit"]), ("subject", None, "refunds", ["refund-1", "refund-2"])]
    assert {c.actor for c in changes} == {"cli:tester"} and all(c.at <= datetime.now(UTC) for c in changes)
    kept = changes[1].body
    assert isinstance(kept, MemoryKept) and "jane.doe" not in kept.model_dump_json()  # redacted there too
    assert [c.body.scope for c in ops.log.changes(tenant_id=gone) if isinstance(c.body, MemoryForgotten)] == [
        "opt_out"]


def test_the_memory_service_records_runs_and_forgets_and_rebuilds(stack: Stack, tmp_path) -> None:
    tenant = f"memlog-{uuid.uuid4().hex[:8]}"
    stack.cli("memory", "opt-in", "--tenant", tenant)
    facts = tmp_path / "facts.jsonl"
    lines = [{"id": "code", "text": "Our project code is LYNX-9"},
             {"id": "old", "text": "The old office was in Leeds", "subject": "office"}]
    facts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    stack.cli("memory", "import", "--tenant", tenant, str(facts))
    done = stack.cli_json("submit", "Remember that the release train leaves on Fridays", "--tenant", tenant,
                          "--wait")
    assert done["status"] == "completed"
    forgot = stack.cli_json("memory", "forget", "--tenant", tenant, "--subject", "office")
    assert forgot["forgotten"] == ["old"]
    before = stack.cli_json("memory", "list", "--tenant", tenant)

    log = MemoryLog(stack.settings)
    try:
        changes = list(log.changes(tenant_id=tenant))
    finally:
        log.close()
    assert [type(c.body) for c in changes] == [MemoryOptedIn, MemoryKept, MemoryKept, MemoryForgotten]
    run_kept = changes[2]
    assert run_kept.actor == "memory" and isinstance(run_kept.body, MemoryKept)
    assert {m.run_id for m in run_kept.body.memories} == {done["run_id"]}
    assert changes[3].actor.startswith("cli:")

    rebuilt = stack.cli_json("memory", "rebuild", "--tenant", tenant)
    assert rebuilt["tenants"][0]["memories"] == len(before) >= 2
    assert stack.cli_json("memory", "list", "--tenant", tenant) == before


def _events(stack: Stack, run_id: str) -> dict[str, dict[str, Any]]:
    shown = stack.cli_json("runs", "show", run_id)
    return {e["event_type"]: e["payload"] for e in shown["events"]}


def test_a_run_about_a_subject_is_given_and_leaves_memories_of_that_subject(stack: Stack, tmp_path) -> None:
    tenant = f"subject-{uuid.uuid4().hex[:8]}"
    stack.cli("memory", "opt-in", "--tenant", tenant)
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(line) + "\n" for line in [
        {"id": "globex", "text": "The account manager is Ana Lima", "subject": "globex"},
        {"id": "initech", "text": "The account manager is Bob Stone", "subject": "initech"},
        {"id": "all", "text": "Every account manager answers within a day"}]))
    stack.cli("memory", "import", "--tenant", tenant, str(facts))

    done = stack.cli_json("submit", "Who is the account manager?", "--tenant", tenant, "--subject", "initech",
                          "--wait")
    assert done["status"] == "completed"
    events = _events(stack, done["run_id"])
    assert events["RunStarted"]["memory_subject"] == "initech"
    assert [m["memory_id"] for m in events["MemoryRetrieved"]["memories"]] == ["initech"]
    assert "Bob Stone" in stack.cli_json("runs", "show", done["run_id"])["answer"]
    assert {m["subject"] for m in events["MemoryStored"]["memories"]} == {"initech"}

    with stack.client(tenant) as http:
        accepted = http.post("/v1/runs", json={"text": "Who is the account manager?", "subject": "globex"})
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        again = http.post("/v1/runs", json={"text": "Who is the account manager?", "subject": "initech"},
                          headers={"Idempotency-Key": "k1"})
        clash = http.post("/v1/runs", json={"text": "Who is the account manager?", "subject": "globex"},
                          headers={"Idempotency-Key": "k1"})
        assert again.status_code == 202 and clash.status_code == 409  # another subject, another request
    shown = eventually(lambda: (s := stack.cli_json("runs", "show", run_id))["status"] == "completed" and s,
                       what="the HTTP run to complete")
    retrieved = next(e["payload"] for e in shown["events"] if e["event_type"] == "MemoryRetrieved")
    assert [m["memory_id"] for m in retrieved["memories"]] == ["globex"]
    assert "Ana Lima" in shown["answer"]


def test_the_demo_shows_a_remembered_fact_used_by_a_later_run(stack: Stack, monkeypatch) -> None:
    from rich.console import Console

    from streams.cli.common import Context
    from streams.cli.demo_memory import show_memory

    monkeypatch.setenv("AGENTLOG_MEMORY_PORT", stack.env["AGENTLOG_MEMORY_PORT"])  # the stack's service
    ctx = Context(stack.settings)
    ctx.console = Console(record=True, width=200, highlight=False)
    show_memory(ctx, stamp=uuid.uuid4().hex[:8])
    shown = ctx.console.export_text()
    stored = next(line for line in shown.splitlines() if "MemoryStored" in line)
    assert "ORION-7" in stored and "<PHONE_NUMBER>" in stored
    assert "901820" not in shown.split("MemoryStored", 1)[1]  # only the request itself shows the number
    assert "MemoryRetrieved, before planning: our project code is ORION-7" in shown
    assert "remembered fact" in shown and "From memory: our project code is ORION-7" in shown, shown
