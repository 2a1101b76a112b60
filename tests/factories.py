"""Example events for tests: one payload of every type, and envelopes around them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    PAYLOAD_TYPES,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetExceeded,
    Event,
    MemoryRetrieved,
    MemoryStored,
    ModelCall,
    ObservationCaptured,
    PlanGenerated,
    PlanRejected,
    PlanStep,
    Record,
    RequestRetried,
    ResponseDrafted,
    ResponseFinalized,
    ResponseRequested,
    RetrievedMemory,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunMetrics,
    RunRequested,
    RunStarted,
    RunTimedOut,
    StepTimedOut,
    ToolApproved,
    ToolExecuted,
    ToolProposed,
    ToolRejected,
)

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
CALL = ModelCall(provider="scripted", model="scripted-v1", prompt_version="scripted/1",
                 input_tokens=12, output_tokens=80, latency_ms=3, cost_usd=0.0)
METRICS = RunMetrics(tool_calls=1, tickets_created=0, emails_sent=0, cost_usd=0.0015)
OBS = ObservationCaptured(step_id="s1", tool="search_docs", status="ok", summary="refunds: 30 days")


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def one_of_each() -> list[Record]:
    """A payload of every event type, with nested records, optionals set and unset."""
    payloads: list[Record] = [
        RunRequested(text="what is our refund policy?", idempotency_key="k1"),
        RunStarted(text="what is our refund policy?", route="support", idempotency_key="k1",
                   requested_by="ana", traceparent=TRACEPARENT, memory=True, memory_subject="ana"),
        PlanGenerated(max_steps=3, budget_usd=0.5, steps=[PlanStep(
            id="s1", objective="find the policy", tool="search_docs",
            input_json='{"query": "refund"}', success_criteria="a passage is found")],
            stop_conditions=["all steps done"], plan_json="{}", model_call=CALL),
        PlanRejected(errors=["steps: too short"], raw_output="{}", model_call=CALL),
        ToolProposed(step_id="s1", tool="search_docs", input_json="{}", objective="find it",
                     route="support", idempotency_key="r/s1", run_metrics=METRICS),
        ToolApproved(step_id="s1", tool="search_docs", input_json="{}", idempotency_key="r/s1",
                     reason="default allow", policy_version="sha256:abc"),
        ToolRejected(step_id="s1", tool="query_sql", rule="deny_destructive_sql", reason="drop",
                     policy_version="sha256:abc"),
        ApprovalRequested(step_id="s1", tool="send_email", input_json="{}", rule="r", reason="x",
                          policy_version="v", expires_at=T0 + timedelta(days=1)),
        ApprovalGranted(step_id="s1", approver="ana", reason="ok"),
        ApprovalDenied(step_id="s1", approver="ana"),
        ApprovalExpired(step_id="s1"),
        ToolExecuted(step_id="s1", tool="search_docs", status="ok", output_json='{"hits": []}',
                     duration_ms=40, cost_usd=0.0005),
        OBS,
        ResponseRequested(request_text="refunds?", observations=[OBS], memories=["refunds take 30 days"]),
        ResponseDrafted(text="30 days.", model_call=CALL),
        ResponseFinalized(text="30 days."),
        BudgetExceeded(limit="budget_usd", limit_value=0.5, spent=0.6, reason="over"),
        StepTimedOut(request_id="run-0001/4", request_type="ToolApproved", attempt=1,
                     timeout_s=30.0),
        RequestRetried(request_id="run-0001/4", request_type="ToolApproved", attempt=2,
                       timeout_s=60.0, request_json="{}"),
        RunTimedOut(limit_s=600.0, active_s=601.5),
        RunCancelled(reason="user asked", requested_by="ana", cost_usd=0.0012),
        RunFailed(stage="planning", reason="plan rejected", cost_usd=0.0021),
        RunCompleted(outcome="succeeded", tool_calls=1, cost_usd=0.0005, duration_ms=1234),
        MemoryRetrieved(status="ok", text="what is our project code?", route="support",
                        memories=[RetrievedMemory(memory_id="m1", text="Our project code is ZEBRA-42.",
                                                  score=0.91, expires_at=T0 + timedelta(days=30))],
                        retriever_version="bm25s-hybrid-1"),
        MemoryStored(status="timeout", memories=[], reason="no answer in 2 s"),
    ]
    assert {type(p).__name__ for p in payloads} == set(PAYLOAD_TYPES), "a type has no example"
    return payloads


def envelope(payload: Record, *, run_id: str = "run-0001", seq: int = 1, causation_id: str | None = None,
             actor: str = "orchestrator", at: datetime = T0, event_id: str | None = None) -> Event:
    return Event.of(payload, run_id=run_id, seq=seq, event_id=event_id or f"{run_id}/{seq}",
                    causation_id=causation_id, tenant_id="acme", event_time=at, actor=actor)


def a_run(run_id: str = "run-0001") -> list[Event]:
    """A run's first events: planned, one call done, a second one waiting for a person."""
    plan = PlanGenerated(max_steps=3, budget_usd=0.5, stop_conditions=["done"], plan_json="{}",
                         model_call=CALL,
                         steps=[PlanStep(id="s1", objective="find the policy", tool="search_docs",
                                         input_json='{"query": "refund"}', success_criteria="a passage"),
                                PlanStep(id="s2", objective="tell the customer", tool="send_email",
                                         input_json='{"to": "x@example.org"}', success_criteria="sent")])
    kinds: list[tuple[Record, int | None]] = [
        (RunStarted(text="refunds?", route="support", idempotency_key="k1"), None),
        (plan, None),
        (ToolProposed(step_id="s1", tool="search_docs", input_json='{"query": "refund"}', objective="find it",
                      idempotency_key=f"{run_id}/s1", run_metrics=METRICS), 2),
        (ToolApproved(step_id="s1", tool="search_docs", input_json='{"query": "refund"}',
                      idempotency_key=f"{run_id}/s1", reason="default allow", policy_version="v1"), 3),
        (ToolExecuted(step_id="s1", tool="search_docs", status="ok", output_json='{"hits": []}',
                      duration_ms=40, cost_usd=0.0005), 4),
        (OBS, 5),
        (ToolProposed(step_id="s2", tool="send_email", input_json='{"to": "x@example.org"}',
                      objective="tell", idempotency_key=f"{run_id}/s2", run_metrics=METRICS), 6),
        (ApprovalRequested(step_id="s2", tool="send_email", input_json='{"to": "x@example.org"}', rule="r",
                           reason="external", policy_version="v1", expires_at=T0 + timedelta(days=1)), 7),
    ]
    return [envelope(p, run_id=run_id, seq=seq, at=T0 + timedelta(seconds=seq),
                     causation_id=f"{run_id}/{cause}" if cause else None)
            for seq, (p, cause) in enumerate(kinds, 1)]
