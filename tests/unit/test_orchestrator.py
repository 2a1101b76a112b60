"""The orchestrator's decisions and the fold, driven like the stack drives them, without I/O."""

from __future__ import annotations

from datetime import timedelta

from processors.orchestrator import FALLBACK_ANSWER, due_timers, event_id_for, handle
from processors.results import answer
from processors.state import Status, fold
from schemas.events import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetExceeded,
    PlanRejected,
    ResponseDrafted,
    ResponseFinalized,
    RunCancelled,
    ToolRejected,
)
from tests.factories import CALL, T0, envelope
from tests.harness import CONFIG, RUN, Run, approve, executed, plan


def test_a_run_goes_from_request_to_completion_with_dense_seq():
    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "refund"})))
    r.reply("ToolProposed", approve("s1", "search_docs", '{"query": "refund"}'))
    r.reply("ToolApproved", executed("search_docs", {"hits": [{"doc": "refunds.md", "passage": "30 days"}]}))
    r.reply("ResponseRequested", ResponseDrafted(text="Refunds within 30 days.", model_call=CALL))
    assert r.types()[-1] == "ResponseDrafted"  # the draft waits for its finalizer
    writer = CALL.model_copy(update={"model": "strong-writer", "cost_usd": 0.0013})
    r.reply("ResponseDrafted", ResponseFinalized(text="Refunds within 30 days.", model_call=writer),
            actor="responder")
    assert r.types() == [
        "RunStarted", "PlanGenerated", "ToolProposed", "ToolApproved", "ToolExecuted",
        "ObservationCaptured", "ResponseRequested", "ResponseDrafted", "ResponseFinalized", "RunCompleted",
    ]
    assert [e.seq for e in r.log] == list(range(1, 11))
    assert [e.event_id for e in r.log] == [event_id_for(RUN, s) for s in range(1, 11)]
    done = r.log[-1].payload
    # The tool and every model call count, the finalizer's included.
    assert done.outcome == "succeeded" and done.tool_calls == 1 and done.cost_usd == 0.0018
    assert r.state.status == Status.COMPLETED and r.state.answer == "Refunds within 30 days."
    # Folding the appended log rebuilds exactly the state the orchestrator kept.
    assert fold(r.log) == r.state


def test_causation_links_each_event_to_what_caused_it():
    r = Run()
    r.request()
    started = r.last("RunStarted")
    assert started.causation_id == "req-k1"
    r.reply("RunStarted", plan(("search_docs", {"query": "x"})))
    assert r.last("PlanGenerated").causation_id == started.event_id
    assert r.last("ToolProposed").causation_id == r.last("PlanGenerated").event_id


def test_same_idempotency_key_twice_is_one_run():
    r = Run()
    r.request()
    again = r.request()
    assert again.events == () and "already exists" in again.dropped and not again.invalid
    assert r.types() == ["RunStarted"]


def test_a_result_delivered_twice_is_applied_once():
    r = Run()
    r.request()
    result = answer(r.last("RunStarted"), plan(("search_docs", {"query": "x"})), actor="planner", now=T0)
    first, second = r.send(result), r.send(result)
    assert len(first.events) == 2  # PlanGenerated + ToolProposed
    assert second.events == () and "not an open request" in second.dropped
    assert r.types().count("PlanGenerated") == 1


def test_result_of_the_wrong_kind_is_dead_lettered():
    r = Run()
    r.request()
    wrong = answer(r.last("RunStarted"), executed("search_docs", {}), actor="x", now=T0)
    out = r.send(wrong)
    assert out.events == () and out.invalid and "cannot answer a RunStarted" in out.dropped


def test_records_for_unknown_runs_are_dead_lettered():
    out = handle(None, envelope(ApprovalGranted(step_id="s1", approver="x"), seq=0), now=T0)
    assert out.invalid and "unknown run" in out.dropped


def test_denied_call_becomes_an_observation_and_the_run_still_answers():
    r = Run()
    r.request("drop the orders table")
    r.reply("RunStarted", plan(("query_sql", {"sql": "DROP TABLE orders"})))
    r.reply("ToolProposed", ToolRejected(step_id="s1", tool="query_sql", rule="deny_destructive_sql",
                                         reason="destructive", policy_version="v1"))
    obs = r.last("ObservationCaptured").payload
    assert obs.status == "denied" and obs.summary == "destructive"
    assert r.types()[-1] == "ResponseRequested"
    r.reply("ResponseRequested", ResponseDrafted(text="Not done.", model_call=CALL))
    r.reply("ResponseDrafted", ResponseFinalized(text="Not done."))
    assert r.log[-1].payload.outcome == "refused"
    assert r.state.metrics.tool_calls == 0


def _park(r: Run) -> None:
    r.request("email the report to bob@gmail.com")
    r.reply("RunStarted", plan(("send_email", {"to": "bob@gmail.com", "subject": "r", "body": "b"})))
    r.reply("ToolProposed", ApprovalRequested(
        step_id="s1", tool="send_email", input_json='{"to": "bob@gmail.com"}', rule="ext_email",
        reason="external", policy_version="v1", expires_at=T0 + timedelta(days=1)))


def test_parked_call_waits_then_a_grant_approves_it_with_the_approver_named():
    r = Run()
    _park(r)
    assert r.state.status == Status.AWAITING_APPROVAL and r.types()[-1] == "ApprovalRequested"
    r.send(envelope(ApprovalGranted(step_id="s1", approver="ana", reason="ok"), run_id=RUN, seq=0,
                    actor="human:ana", event_id="h1"))
    approved = r.last("ToolApproved").payload
    assert approved.approved_by == "ana" and approved.rule == "ext_email"
    assert approved.input_json == '{"to": "bob@gmail.com"}'
    assert r.state.status == Status.RUNNING and r.state.parked is None
    # A second grant finds nothing waiting.
    late = r.send(envelope(ApprovalGranted(step_id="s1", approver="bo"), run_id=RUN, seq=0, event_id="h2"))
    assert late.events == () and "nothing waits" in late.dropped


def test_denied_approval_rejects_the_call():
    r = Run()
    _park(r)
    r.send(envelope(ApprovalDenied(step_id="s1", approver="ana", reason="no"), run_id=RUN, seq=0,
                    event_id="h1"))
    rejected = r.last("ToolRejected").payload
    assert rejected.rejected_by == "ana" and rejected.reason == "rejected by ana: no"
    assert "ToolApproved" not in r.types()


def test_plan_rejected_gives_the_fallback_answer_and_runs_nothing():
    r = Run()
    r.request()
    r.reply("RunStarted", PlanRejected(errors=["steps: at least 1"], raw_output="{}", model_call=CALL))
    assert r.types() == ["RunStarted", "PlanRejected", "ResponseFinalized", "RunFailed"]
    assert r.state.answer.startswith(FALLBACK_ANSWER.split("{")[0])
    assert r.state.status == Status.FAILED and "steps: at least 1" in r.log[-1].payload.reason


def test_budget_is_checked_before_a_call_and_the_run_ends_with_an_answer():
    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "x"}), ("send_email", {}), budget=0.002))
    r.reply("ToolProposed", approve("s1", "search_docs", "{}"))
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    assert r.types()[-2:] == ["BudgetExceeded", "ResponseRequested"]
    assert r.last("BudgetExceeded").payload.spent == 0.0005
    assert "send_email" not in [e.payload.tool for e in r.log if e.event_type == "ToolProposed"]
    r.reply("ResponseRequested", ResponseDrafted(text="Found nothing; stopped.", model_call=CALL))
    r.reply("ResponseDrafted", ResponseFinalized(text="Found nothing; stopped."))
    assert r.log[-1].event_type == "RunCompleted" and r.log[-1].payload.outcome == "budget_exceeded"


def test_a_planner_refusing_for_the_tenant_budget_ends_the_run_with_a_clear_answer():
    r = Run()
    r.request()
    r.reply("RunStarted", BudgetExceeded(limit="tenant_daily_usd", limit_value=1.0, spent=1.2,
                                         reason="tenant acme spent $1.20 of $1.00 today"))
    assert r.types() == ["RunStarted", "BudgetExceeded", "ResponseFinalized", "RunFailed"]
    assert "budget" in r.state.answer and "$1.20" in r.state.answer
    failed = r.log[-1].payload
    assert failed.stage == "budget" and "tenant_daily_usd" in failed.reason


def test_a_run_that_fails_or_is_cancelled_says_what_it_cost():
    priced = CALL.model_copy(update={"cost_usd": 0.0007})
    r = Run()
    r.request()
    r.reply("RunStarted", PlanRejected(errors=["steps: at least 1"], raw_output="{}", model_call=priced))
    assert r.log[-1].event_type == "RunFailed" and r.log[-1].payload.cost_usd == 0.0007

    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "x"})))
    r.reply("ToolProposed", approve("s1", "search_docs", "{}"))
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    spent = r.state.metrics.cost_usd
    assert spent > 0
    # The caller's figure is not the run's: the orchestrator sets it.
    r.send(envelope(RunCancelled(reason="enough", requested_by="ana", cost_usd=99.0), run_id=RUN,
                    seq=0, event_id="c1", actor="user:ana"))
    assert r.log[-1].event_type == "RunCancelled" and r.log[-1].payload.cost_usd == spent


def test_after_cancellation_late_results_are_ignored():
    r = Run()
    r.request()
    r.send(envelope(RunCancelled(reason="changed my mind", requested_by="ana"), run_id=RUN, seq=0,
                    event_id="c1", actor="user:ana"))
    assert r.state.status == Status.CANCELLED
    late = r.reply("RunStarted", plan(("search_docs", {"query": "x"})))
    assert late.events == () and "after the run ended" in late.dropped


def test_an_expiry_before_the_deadline_is_ignored_and_after_it_rejects_the_call():
    r = Run()
    _park(r)
    parked = r.state.parked
    early = r.send(envelope(ApprovalExpired(step_id="s1"), run_id=RUN, seq=0, event_id="t1", actor="timer"))
    assert early.events == () and "expires only at" in early.dropped
    assert due_timers(r.state, r.clock, CONFIG) == []
    r.clock = parked.expires_at
    assert due_timers(r.state, r.clock, CONFIG) == [(ApprovalExpired(step_id="s1"), r.state.parked_event_id)]
    r.send(envelope(ApprovalExpired(step_id="s1"), run_id=RUN, seq=0, event_id="t2", actor="timer"))
    rejected = r.last("ToolRejected").payload
    assert rejected.reason == "approval expired" and rejected.rejected_by is None
    assert "ToolApproved" not in r.types() and r.types()[-1] == "ResponseRequested"
