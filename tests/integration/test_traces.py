"""One trace per run, received by a real OpenTelemetry Collector from every process of the stack:
names, attributes and parents as the GenAI conventions say, and the trace id the run's events record."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Stack, eventually
from tests.otel_collector import Collector, ReceivedSpan

pytestmark = pytest.mark.integration


Spans = dict[str, list[ReceivedSpan]]


def _trace(stack: Stack, collector: Collector, run_id: str, *, expect: set[str]) -> Spans:
    view = stack.client("acme").get(f"/v1/runs/{run_id}").json()
    trace_id = view["trace_id"]
    started = view["events"][0]["payload"]["traceparent"]
    assert started.split("-")[1] == trace_id  # the id the API shows is the one RunStarted records

    def arrived() -> Spans | None:
        spans: Spans = {}
        for s in collector.spans():
            if s.trace_id == trace_id:
                spans.setdefault(s.name, []).append(s)
        return spans if expect <= set(spans) else None

    return eventually(arrived, timeout=30, what=f"spans {sorted(expect)} of run {run_id} in the collector")


def _one(spans: Spans, name: str) -> ReceivedSpan:
    (span,) = spans[name]
    return span


def test_a_run_is_one_trace_with_a_span_for_each_step(stack: Stack, collector: Collector) -> None:
    out = stack.cli_json("submit", "What is our refund policy for annual plans?", "--wait",
                         "--tenant", "acme")
    assert out["status"] == "completed"
    spans = _trace(stack, collector, out["run_id"], expect={
        "invoke_agent agentlog", "chat scripted-v1", "apply_guardrail search_docs",
        "execute_tool search_docs"})
    root = _one(spans, "invoke_agent agentlog")
    assert root.parent_id == "" and root.service == "agentlog-orchestrator"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "agentlog"
    assert root.attributes["gen_ai.conversation.id"] == out["run_id"]
    assert root.attributes["agentlog.tenant_id"] == "acme" and root.attributes["agentlog.route"] == "default"
    assert root.attributes["agentlog.run.status"] == "completed"

    chat = _one(spans, "chat scripted-v1")
    assert chat.service == "agentlog-planner" and chat.kind.endswith("Client")
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "scripted"
    assert chat.attributes["gen_ai.request.model"] == "scripted-v1"
    assert int(chat.attributes["gen_ai.usage.input_tokens"]) > 0
    assert int(chat.attributes["gen_ai.usage.output_tokens"]) > 0
    assert "gen_ai.system" not in chat.attributes

    guard = _one(spans, "apply_guardrail search_docs")
    assert guard.service == "agentlog-guard"
    assert guard.attributes["gen_ai.security.decision.type"] == "allow"
    assert guard.attributes["gen_ai.security.policy.version"]
    tool = _one(spans, "execute_tool search_docs")
    assert tool.service == "agentlog-executor" and tool.attributes["gen_ai.tool.name"] == "search_docs"
    assert tool.attributes["agentlog.tool.status"] == "ok"
    assert "gen_ai.tool.call.result" not in tool.attributes  # not opted in

    # Every process continued the run's trace from the record's header: all hang under the root.
    children = [s for name, found in spans.items() for s in found if name != "invoke_agent agentlog"]
    assert {s.service for s in children} >= {"agentlog-planner", "agentlog-guard", "agentlog-executor",
                                              "agentlog-responder"}
    assert all(s.parent_id == root.span_id for s in children), [(s.name, s.parent_id) for s in children]


def test_a_persons_wait_and_a_denied_call_are_spans_of_their_runs(stack: Stack, collector: Collector) -> None:
    parked = stack.cli_json("submit", "Send an email to buyer@traces.example about the contract renewal",
                            "--wait", "--tenant", "acme")
    assert parked["status"] == "awaiting_approval"
    stack.cli("approvals", "approve", parked["run_id"], "--approver", "sec-lead")
    eventually(lambda: stack.cli_json("runs", "show", parked["run_id"])["status"] == "completed",
               what="the approved run to complete")
    spans = _trace(stack, collector, parked["run_id"], expect={
        "invoke_agent agentlog", "apply_guardrail send_email", "await_approval send_email",
        "execute_tool send_email"})
    asked = _one(spans, "apply_guardrail send_email")
    assert asked.attributes["gen_ai.security.decision.type"] == "require_approval"
    wait = _one(spans, "await_approval send_email")
    assert wait.attributes["agentlog.approval.decision"] == "granted"
    assert wait.attributes["agentlog.approval.approver"] == "sec-lead"
    assert wait.parent_id == _one(spans, "invoke_agent agentlog").span_id

    denied = stack.cli_json("submit", "Drop the orders table.", "--wait", "--tenant", "acme")
    spans = _trace(stack, collector, denied["run_id"],
                   expect={"invoke_agent agentlog", "apply_guardrail query_sql"})
    decision = _one(spans, "apply_guardrail query_sql")
    assert decision.attributes["gen_ai.security.decision.type"] == "deny"
    assert decision.attributes["agentlog.policy.rule"] == "deny_destructive_sql"
    assert "execute_tool query_sql" not in spans
