"""One agent run end to end on the real stack: CLI and HTTP in, Kafka, processors, tools, chDB."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from processors.tools.backends.mailbox import read_mailbox
from processors.tools.backends.tickets import list_tickets
from streams.backends import backend_config
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def submit(stack: Stack, text: str, *extra: str) -> dict:
    return stack.cli_json("submit", text, "--wait", "--tenant", "acme", *extra)


def timeline(stack: Stack, run_id: str) -> dict:
    return stack.cli_json("runs", "show", run_id)


def types(run: dict) -> list[str]:
    return [e["event_type"] for e in run["events"]]


def test_status_reports_kafka_and_every_service(stack: Stack):
    info = stack.cli_json("status")
    assert info["kafka"]["bootstrap"] == f"127.0.0.1:{stack.settings.kafka_port}"
    expected = {"mail", "orchestrator", "planner", "guard", "executor", "responder", "memory", "sink",
                "alerting", "gateway", "watchdog"}
    assert set(info["services"]) == expected
    assert all(s["alive"] and isinstance(s["pid"], int) for s in info["services"].values())
    # Alive is not all: each folding or consuming service says whether it works.
    assert all(info["services"][s]["state"] in ("idle", "working", "waiting")
               for s in ("orchestrator", "planner", "guard", "executor", "responder", "memory", "sink"))


def test_a_docs_question_is_answered_from_the_documents(stack: Stack):
    out = submit(stack, "What is our refund policy for annual plans?")
    assert out["status"] == "completed"
    run = timeline(stack, out["run_id"])
    assert [e["seq"] for e in run["events"]] == list(range(1, len(run["events"]) + 1))
    assert types(run)[:3] == ["RunStarted", "PlanGenerated", "ToolProposed"]
    assert types(run)[-1] == "RunCompleted"
    executed = next(e for e in run["events"] if e["event_type"] == "ToolExecuted")["payload"]
    assert executed["tool"] == "search_docs" and executed["status"] == "ok"
    assert "refund" in json.loads(executed["output_json"])["hits"][0]["doc"].lower()
    assert "refund" in run["answer"].lower()


def test_a_sql_question_is_answered_from_the_database(stack: Stack):
    out = submit(stack, "How many customers do we have in Germany?")
    run = timeline(stack, out["run_id"])
    executed = next(e for e in run["events"] if e["event_type"] == "ToolExecuted")["payload"]
    assert executed["tool"] == "query_sql" and executed["status"] == "ok"
    db = sqlite3.connect(backend_config(stack.settings).sql_path)
    (germans,) = db.execute("SELECT count(*) FROM customers WHERE country = 'DE'").fetchone()
    assert json.loads(executed["output_json"])["rows"] == [[germans]]
    assert str(germans) in run["answer"]


def test_a_destructive_request_is_denied_by_rule_and_the_table_survives(stack: Stack):
    db_path = backend_config(stack.settings).sql_path
    before = sqlite3.connect(db_path).execute("SELECT count(*) FROM orders").fetchone()
    out = submit(stack, "Please drop the orders table")
    run = timeline(stack, out["run_id"])
    rejected = next(e for e in run["events"] if e["event_type"] == "ToolRejected")["payload"]
    assert rejected["rule"] == "deny_destructive_sql" and rejected["policy_version"].startswith("sha256:")
    assert "ToolExecuted" not in types(run) and "ToolApproved" not in types(run)
    assert out["status"] == "completed" and run["events"][-1]["payload"]["outcome"] == "refused"
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM orders").fetchone() == before


def test_external_email_waits_for_a_person_then_is_sent_exactly_once(stack: Stack):
    out = submit(stack, "Send an email to jane.doe@gmail.com about the delayed shipment")
    assert out["status"] == "awaiting_approval"
    run_id = out["run_id"]
    run = timeline(stack, run_id)
    parked = run["events"][-1]
    assert parked["event_type"] == "ApprovalRequested"
    assert parked["payload"]["rule"] == "deny_external_email_without_approval"
    maildir = str(stack.settings.path("backends", "mail"))
    assert not [m for m in read_mailbox(maildir) if run_id in m["idempotency_key"]]

    pending = eventually(lambda: [a for a in stack.cli_json("approvals", "list") if a["run_id"] == run_id],
                         what="the parked call in approvals list")
    assert pending[0]["tool"] == "send_email" and pending[0]["input"]["to"] == "jane.doe@gmail.com"

    stack.cli("approvals", "approve", run_id, "--approver", "sec-lead", "--reason", "customer asked")
    run = eventually(lambda: (r := timeline(stack, run_id))["status"] == "completed" and r,
                     what="the approved run to complete")
    approved = next(e for e in run["events"] if e["event_type"] == "ToolApproved")["payload"]
    assert approved["approved_by"] == "sec-lead"
    mails = [m for m in read_mailbox(maildir) if m["idempotency_key"] == f"{run_id}/s1"]
    assert len(mails) == 1 and "jane.doe@gmail.com" in mails[0]["envelope_recipients"]
    # Approving again is refused: nothing waits any more.
    again = stack.cli("approvals", "approve", run_id, check=False)
    assert again.returncode == 1 and "not waiting" in again.stderr


def test_a_ticket_is_opened_once_with_the_run_step_as_idempotency_key(stack: Stack):
    out = submit(stack, "Open an urgent ticket: the checkout page returns 500 errors")
    assert out["status"] == "completed"
    tickets = [t for t in list_tickets(backend_config(stack.settings).tickets_path)
               if t["idempotency_key"] == f"{out['run_id']}/s1"]
    assert len(tickets) == 1 and tickets[0]["priority"] == "high"


def test_the_same_idempotency_key_twice_is_one_run(stack: Stack):
    key = f"key-{uuid.uuid4()}"
    first = submit(stack, "How many orders are pending?", "--idempotency-key", key)
    second = submit(stack, "How many orders are pending?", "--idempotency-key", key)
    assert first["run_id"] == second["run_id"]
    assert types(timeline(stack, first["run_id"])).count("RunStarted") == 1


def test_gateway_accepts_runs_over_http_idempotently(stack: Stack):
    http = stack.client("acme")
    key = f"http-{uuid.uuid4()}"
    body = {"text": "What are the API rate limits?", "route": "demo"}
    first = http.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    second = http.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    run_id = first.json()["run_id"]
    assert second.json()["run_id"] == run_id and first.json()["tenant_id"] == "acme"
    run = eventually(lambda: (r := http.get(f"/v1/runs/{run_id}")).status_code == 200
                     and r.json()["status"] == "completed" and r.json(), what="the HTTP run")
    assert [e["event_type"] for e in run["events"]].count("RunStarted") == 1
    assert run["events"][0]["payload"]["route"] == "demo"
    assert run["events"][0]["payload"]["requested_by"] == "tests-acme"
