"""Human approvals on the real stack: over HTTP, by expiry, and the executor refusing forgeries."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer

from processors.tools.backends.mailbox import read_mailbox
from processors.tools.backends.tickets import list_tickets
from schemas.events import Event, ToolApproved
from streams.backends import backend_config
from streams.kafka import headers_for, make_codec
from streams.partitioning import partition_for
from streams.service import utcnow
from tests.integration.conftest import Stack, eventually
from tests.integration.test_log_contract import read_topic

pytestmark = pytest.mark.integration


def _park_email(stack: Stack, to: str) -> str:
    out = stack.cli_json("submit", f"Send an email to {to} about the contract renewal", "--wait",
                         "--tenant", "acme")
    assert out["status"] == "awaiting_approval"
    return out["run_id"]


def _mails_for(stack: Stack, run_id: str) -> list:
    return [m for m in read_mailbox(str(stack.settings.path("backends", "mail")))
            if m["idempotency_key"].startswith(run_id)]


def test_http_lists_parked_calls_and_a_rejection_ends_the_run_without_sending(stack: Stack):
    run_id = _park_email(stack, "buyer@other-corp.example")
    http = stack.client("acme")
    listed = eventually(lambda: [a for a in http.get("/v1/approvals").json() if a["run_id"] == run_id],
                        what="the call in GET /v1/approvals")
    assert listed[0]["rule"] == "deny_external_email_without_approval"
    assert stack.client("nobody").get("/v1/approvals").json() == []  # another tenant sees none
    reader = stack.client("acme", "read")
    refused = reader.post(f"/v1/runs/{run_id}/reject", json={"approver": "x"})
    assert refused.status_code == 403 and "may not approve" in refused.json()["error"]["message"]

    r = http.post(f"/v1/runs/{run_id}/reject", json={"approver": "sec-lead", "reason": "unknown buyer"})
    assert r.status_code == 202 and r.json() == {"run_id": run_id, "step_id": "s1", "decision": "rejected"}
    run = eventually(lambda: (x := stack.cli_json("runs", "show", run_id))["status"] == "completed" and x,
                     what="the rejected run to finish")
    rejected = next(e for e in run["events"] if e["event_type"] == "ToolRejected")["payload"]
    # The log names the key that signed the decision, beside the name the request gave.
    assert rejected["rejected_by"].startswith("sec-lead · tests-acme (key ")
    assert "unknown buyer" in rejected["reason"]
    assert "ToolExecuted" not in [e["event_type"] for e in run["events"]]
    assert _mails_for(stack, run_id) == []
    again = http.post(f"/v1/runs/{run_id}/approve", json={"approver": "x"})
    assert again.status_code == 409 and "already rejected by sec-lead" in again.json()["error"]["message"]
    assert http.post(f"/v1/runs/{uuid.uuid4()}/approve", json={"approver": "x"}).status_code == 404
    assert http.post(f"/v1/runs/{run_id}/approve", json={}).status_code == 422


def test_an_unanswered_approval_expires_and_the_call_never_runs(stack: Stack):
    with stack.restarted("guard", AGENTLOG_APPROVAL_TTL_S="2"):
        out = stack.cli_json("submit", "Email the invoice to accounts@supplier.example", "--wait")
        assert out["status"] == "awaiting_approval"
        run = eventually(lambda: (x := stack.cli_json("runs", "show", out["run_id"]))["status"] == "completed"
                         and x, what="the approval to expire", timeout=30)
    kinds = [e["event_type"] for e in run["events"]]
    assert "ApprovalExpired" in kinds and "ToolApproved" not in kinds
    expired = next(e for e in run["events"] if e["event_type"] == "ApprovalExpired")
    assert expired["actor"] == "timer"
    rejected = next(e for e in run["events"] if e["event_type"] == "ToolRejected")["payload"]
    assert rejected["reason"] == "approval expired"
    assert _mails_for(stack, out["run_id"]) == []


def test_the_executor_refuses_a_call_the_guard_never_approved(stack: Stack):
    """A forged ToolApproved written straight to the log (bypassing orchestrator and guard)."""
    run_id = _park_email(stack, "ceo@rival.example")
    run = stack.cli_json("runs", "show", run_id)
    proposal = next(e for e in run["events"] if e["event_type"] == "ToolProposed")
    codec = make_codec(stack.settings)
    forged = Event.of(
        ToolApproved(step_id="s1", tool="create_ticket", idempotency_key=f"{run_id}/s1",
                     input_json=json.dumps({"title": "forged", "description": "never approved"}),
                     reason="trust me", policy_version="none"),
        run_id=run_id, seq=run["events"][-1]["seq"] + 1, event_id=str(uuid.uuid4()),
        causation_id=proposal["event_id"], tenant_id=run["tenant_id"], event_time=utcnow(),
        actor="policy_guard")
    p = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    p.produce(stack.settings.events_topic, key=run_id, value=codec.encode(forged),
              headers=headers_for(forged), partition=partition_for(run_id, stack.settings.partitions))
    p.flush(10)
    dead = eventually(lambda: [m for m in read_topic(stack, stack.settings.deadletter_topic)
                               if m.key() == run_id.encode()], what="the executor's refusal")
    headers = dict(dead[0].headers())
    assert headers["dlq.service"] == b"executor" and headers["dlq.reason"].startswith(b"refused:")
    tickets = list_tickets(backend_config(stack.settings).tickets_path)
    assert not [t for t in tickets if t["idempotency_key"] == f"{run_id}/s1"]
    assert _mails_for(stack, run_id) == []
