"""What a run's spans say (pure), and that the SDK exports them in one trace per run."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from processors.replay.model_grader import OpenAICompatibleGrader
from processors.results import answer
from processors.snapshot import from_snapshot, to_snapshot
from processors.spans import SpanSpec, answer_span, log_span, log_spans, new_traceparent, parse_traceparent
from processors.state import evolve
from schemas.codec import EventCodec
from schemas.events import (
    ApprovalGranted,
    ApprovalRequested,
    Event,
    ResponseDrafted,
    ResponseFinalized,
    RunRequested,
    RunStarted,
    ToolExecuted,
    ToolRejected,
)
from streams import telemetry
from streams.cli.replay import _TracedGrader
from tests.factories import CALL, T0, envelope
from tests.harness import RUN, Run, approve, executed, plan

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _requested(r: _Traced, text: str = "email the report to bob@gmail.com") -> None:
    r.send(envelope(RunRequested(text=text, idempotency_key="k1", traceparent=TRACE), run_id=RUN, seq=0,
                    actor="gateway", event_id="req-k1"))


class _Traced(Run):
    """The harness, closing spans as the orchestrator service does: per inbox record."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[SpanSpec] = []

    def send(self, record: Event):
        before = self.state
        outcome = super().send(record)
        self.closed += log_spans(before, outcome.events, outcome.state)
        return outcome


def _log_spans(r: _Traced) -> list[SpanSpec]:
    """The spans the run's log closes, and a check that the service's way finds the same: folding
    event by event."""
    spans, state = [], None
    for event in r.log:
        if (span := log_span(state, event)) is not None:
            spans.append(span)
        state = evolve(state, event)
    assert r.closed == spans
    return spans


def _parked_run() -> _Traced:
    r = _Traced()
    _requested(r)
    r.reply("RunStarted", plan(("send_email", {"to": "bob@gmail.com", "subject": "r", "body": "b"})))
    r.reply("ToolProposed", ApprovalRequested(
        step_id="s1", tool="send_email", input_json='{"to": "bob@gmail.com"}', rule="ext_email",
        reason="external", policy_version="v7", expires_at=T0 + timedelta(days=1)))
    return r


def test_the_trace_context_of_the_request_is_the_runs_and_survives_a_snapshot() -> None:
    r = _parked_run()
    assert r.log[0].payload.traceparent == TRACE and r.state.traceparent == TRACE
    codec = EventCodec()
    back = from_snapshot(to_snapshot(r.state, codec), codec, run_id=RUN)
    assert back.traceparent == TRACE and back.parked_at == r.state.parked_at == r.log[-1].event_time


def test_a_completed_run_closes_its_root_span_with_what_it_cost() -> None:
    r = _Traced()
    _requested(r, "find the refund policy")
    r.reply("RunStarted", plan(("search_docs", {"query": "refund"})))
    r.reply("ToolProposed", approve("s1", "search_docs", '{"query": "refund"}'))
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    r.reply("ResponseRequested", ResponseDrafted(text="30 days.", model_call=CALL))
    r.reply("ResponseDrafted", ResponseFinalized(text="30 days."))
    assert r.types()[-1] == "RunCompleted"
    spans = _log_spans(r)
    assert [s.name for s in spans] == ["invoke_agent agentlog"]
    root = spans[0]
    assert root.root and root.error_type is None
    assert root.start == r.log[0].event_time and root.end == r.log[-1].event_time
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "agentlog"
    assert root.attributes["gen_ai.conversation.id"] == RUN
    assert root.attributes["agentlog.tenant_id"] == "acme" and root.attributes["agentlog.route"] == "default"
    assert root.attributes["agentlog.run.status"] == "completed"
    assert root.attributes["agentlog.tool_calls"] == 1
    assert root.attributes["agentlog.cost_usd"] == r.log[-1].payload.cost_usd


def test_a_persons_wait_is_a_span_from_parking_to_the_decision() -> None:
    r = _parked_run()
    parked_at = r.log[-1].event_time
    r.clock += timedelta(minutes=3)
    r.send(envelope(ApprovalGranted(step_id="s1", approver="ana", reason="ok"), run_id=RUN, seq=0,
                    actor="human:ana", event_id="h1"))
    wait = next(s for s in _log_spans(r) if s.name.startswith("await_approval"))
    assert wait.name == "await_approval send_email"
    assert wait.start == parked_at and wait.end - wait.start >= timedelta(minutes=3)
    assert wait.attributes["agentlog.approval.decision"] == "granted"
    assert wait.attributes["agentlog.approval.approver"] == "ana"
    assert wait.attributes["agentlog.policy.rule"] == "ext_email"


def test_an_expired_approval_and_a_timed_out_run_carry_error_type() -> None:
    r = _parked_run()
    r.fire_timers(after_s=86_400 + 1)
    names = {s.name: s for s in _log_spans(r)}
    assert names["await_approval send_email"].error_type == "timeout"
    assert names["await_approval send_email"].attributes["agentlog.approval.decision"] == "expired"

    slow = _Traced()
    _requested(slow, "find the refund policy")
    slow.fire_timers(after_s=3_600)  # the planner never answers
    slow.fire_timers(after_s=3_600)
    slow.fire_timers(after_s=3_600)
    spans = {s.name: s for s in _log_spans(slow)}
    assert spans["await RunStarted"].error_type == "timeout"
    assert slow.state.terminal and spans["invoke_agent agentlog"].error_type == "timeout"


def test_each_kind_of_answer_is_the_span_of_its_work() -> None:
    r = _parked_run()
    started, ended = T0, T0 + timedelta(milliseconds=250)
    proposed, planned = r.last("ToolProposed"), r.last("PlanGenerated")

    chat = answer_span(r.last("RunStarted"), planned, started=started, ended=ended)
    assert chat is not None and chat.name == f"chat {CALL.model}" and chat.kind == "client"
    assert chat.attributes["gen_ai.provider.name"] == CALL.provider
    assert chat.attributes["gen_ai.request.model"] == CALL.model
    assert chat.attributes["gen_ai.usage.input_tokens"] == CALL.input_tokens
    assert chat.attributes["gen_ai.usage.output_tokens"] == CALL.output_tokens
    assert chat.attributes["agentlog.prompt_version"] == CALL.prompt_version
    assert "gen_ai.system" not in chat.attributes  # the retired name

    parked = answer_span(proposed, r.last("ApprovalRequested"), started=started, ended=ended)
    assert parked is not None and parked.name == "apply_guardrail send_email"
    assert parked.attributes["gen_ai.security.decision.type"] == "require_approval"
    assert parked.attributes["agentlog.policy.rule"] == "ext_email"
    assert parked.attributes["gen_ai.security.policy.version"] == "v7"
    denied = answer(proposed, ToolRejected(step_id="s1", tool="send_email", rule="no_mail", reason="no",
                                           policy_version="v7"), actor="policy_guard", now=ended)
    assert answer_span(proposed, denied, started=started, ended=ended).attributes[
        "gen_ai.security.decision.type"] == "deny"

    call = approve("s1", "send_email", '{"to": "bob@gmail.com"}')
    approved = answer(proposed, call, actor="policy_guard", now=ended)
    timed_out = answer(approved, ToolExecuted(step_id="s1", tool="send_email", status="timeout",
                                              error="no answer in 5 s", duration_ms=5000, cost_usd=0.0),
                       actor="tool_executor", now=ended)
    tool = answer_span(approved, timed_out, started=started, ended=ended)
    assert tool is not None and tool.name == "execute_tool send_email" and tool.error_type == "timeout"
    assert tool.attributes["gen_ai.tool.call.id"] == f"{RUN}/s1"
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # only when opted in
    opted = answer_span(approved, timed_out, started=started, ended=ended, tool_io=True)
    assert json.loads(opted.attributes["gen_ai.tool.call.arguments"]) == {"to": "bob@gmail.com"}


@pytest.mark.parametrize("value", [None, "", "garbage", f"01-{'a' * 32}-{'b' * 16}-01",
                                   f"00-{'0' * 32}-{'b' * 16}-01", f"00-{'g' * 32}-{'b' * 16}-01"])
def test_only_a_w3c_traceparent_is_taken(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_fresh_trace_contexts_are_valid_and_distinct() -> None:
    a, b = new_traceparent(), new_traceparent()
    assert parse_traceparent(a) and parse_traceparent(b) and a != b


@pytest.fixture
def exported():
    memory = InMemorySpanExporter()
    assert telemetry.configure("test", exporter=memory)
    yield memory
    telemetry.shutdown()


def test_spans_share_the_recorded_trace_and_hang_under_the_root(exported: InMemorySpanExporter) -> None:
    r = _parked_run()
    r.send(envelope(ApprovalGranted(step_id="s1", approver="ana"), run_id=RUN, seq=0, event_id="h1"))
    r.reply("ToolApproved", executed("send_email", {"sent": True}))
    r.reply("ResponseRequested", ResponseDrafted(text="sent.", model_call=CALL))
    r.reply("ResponseDrafted", ResponseFinalized(text="sent."))
    for span in _log_spans(r):
        telemetry.emit(span, TRACE)
    tool = answer_span(r.last("ToolApproved"), r.last("ToolExecuted"), started=T0, ended=T0 + timedelta(1))
    telemetry.emit(tool, TRACE)
    telemetry.shutdown()
    got = {s.name: s for s in exported.get_finished_spans()}
    assert set(got) == {"invoke_agent agentlog", "await_approval send_email", "execute_tool send_email"}
    trace_id, span_id = parse_traceparent(TRACE)
    root = got["invoke_agent agentlog"]
    assert format(root.context.trace_id, "032x") == trace_id
    assert format(root.context.span_id, "016x") == span_id
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    for child in ("await_approval send_email", "execute_tool send_email"):
        assert got[child].context.trace_id == root.context.trace_id
        assert got[child].parent.span_id == root.context.span_id
    assert root.resource.attributes["service.name"] == "agentlog-test"


def test_a_failure_is_an_error_status_with_its_type(exported: InMemorySpanExporter) -> None:
    telemetry.emit(SpanSpec("execute_tool x", T0, T0, {"gen_ai.tool.name": "x"}, error_type="timeout"), TRACE)
    telemetry.shutdown()
    (span,) = exported.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "timeout"


def test_nothing_is_exported_unless_the_environment_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not telemetry.configure("test") and not telemetry.enabled()
    telemetry.emit(SpanSpec("x", T0, T0), TRACE)  # a no-op, not an error
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.configure("test")
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    assert telemetry.configure("test") and telemetry.enabled()
    telemetry.shutdown(timeout_s=1.0)
    assert not telemetry.enabled()


def test_a_run_recorded_without_a_trace_gets_no_root_but_keeps_its_other_spans(
        exported: InMemorySpanExporter) -> None:
    # Runs recorded before trace contexts existed carry none: nothing breaks, nothing is made up.
    state = evolve(None, envelope(RunStarted(text="x", route="default", idempotency_key="k"), seq=1))
    assert state.traceparent is None
    telemetry.emit(SpanSpec("invoke_agent agentlog", T0, T0, root=True), state.traceparent)
    telemetry.emit(SpanSpec("execute_tool x", T0, T0), state.traceparent)
    telemetry.shutdown()
    assert [s.name for s in exported.get_finished_spans()] == ["execute_tool x"]


def test_a_model_grader_call_is_a_chat_span_with_its_grade(exported: InMemorySpanExporter) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        graded = '{"score": 0.75, "reason": "ok"}'
        return httpx.Response(200, json={"choices": [{"message": {"content": graded}}],
                                         "usage": {"prompt_tokens": 50, "completion_tokens": 9}})

    grader = _TracedGrader(OpenAICompatibleGrader(base_url="http://grader.test/v1", model="judge",
                                                  transport=httpx.MockTransport(reply)), "local")
    assert grader.grade(request="refunds?", answer="30 days", reference=None, criteria=["found"]) == 0.75
    grader.close()
    (span,) = exported.get_finished_spans()
    assert span.name == "chat judge" and span.kind == SpanKind.CLIENT
    assert span.attributes["gen_ai.provider.name"] == "local"
    assert span.attributes["gen_ai.usage.input_tokens"] == 50
    assert span.attributes["gen_ai.usage.output_tokens"] == 9
    assert span.attributes["gen_ai.evaluation.score.value"] == 0.75


def test_memory_steps_are_spans_with_what_they_found() -> None:
    from schemas.events import MemoryRetrieved, MemoryStored, RetrievedMemory

    started = envelope(RunStarted(text="what is our project code?", route="default", idempotency_key="k",
                                  memory=True), seq=1)
    found = answer(started, MemoryRetrieved(status="ok", text="what is our project code?", route="default",
                                            retriever_version="bm25s-hybrid/1", memories=[RetrievedMemory(
                                                memory_id="m1", text="Our code is ZEBRA-42", score=3.2,
                                                expires_at=T0 + timedelta(days=30))]),
                   actor="memory", now=T0)
    span = answer_span(started, found, started=T0, ended=T0 + timedelta(milliseconds=4))
    assert span is not None and span.name == "search_memory" and span.error_type is None
    assert span.attributes["gen_ai.operation.name"] == "search_memory"
    assert span.attributes["agentlog.memory.count"] == 1
    late = answer(started, MemoryStored(status="unavailable", memories=[]), actor="memory", now=T0)
    stored = answer_span(started, late, started=T0, ended=T0)
    assert stored is not None and stored.name == "store_memory" and stored.error_type == "unavailable"
