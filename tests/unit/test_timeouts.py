"""Step and run timeouts, and retries with backoff, decided by the pure orchestrator."""

from __future__ import annotations

import json
from datetime import timedelta

from processors.executor import refusal
from processors.orchestrator import due_timers
from processors.state import Status, evolve, fold
from processors.tools.registry import default_registry
from schemas.events import (
    ApprovalGranted,
    ApprovalRequested,
    Event,
    RequestRetried,
    ResponseDrafted,
    RunTimedOut,
    StepTimedOut,
)
from tests.factories import CALL, T0, envelope
from tests.harness import CONFIG, RUN, Run, approve, executed, plan

STEP_S = CONFIG.timeouts.step_s


def _planned() -> Run:
    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "refund"})))
    r.reply("ToolProposed", approve("s1", "search_docs", '{"query": "refund"}'))
    assert r.types()[-1] == "ToolApproved"
    return r


def test_an_unanswered_request_is_asked_again_with_a_longer_time_each_attempt():
    r = _planned()
    approved = r.last("ToolApproved")
    # search_docs has its own 5 s limit, added to the step's time.
    assert r.fire_timers(STEP_S + 4) == []
    assert r.fire_timers(1.1) == ["StepTimedOut"]
    timed_out, retried = r.log[-2:]
    assert timed_out.payload == StepTimedOut(request_id=approved.event_id, request_type="ToolApproved",
                                             attempt=1, timeout_s=STEP_S + 5)
    assert timed_out.causation_id == approved.event_id and timed_out.actor == "timer"
    assert retried.event_type == "RequestRetried" and retried.causation_id == timed_out.event_id
    assert retried.payload.attempt == 2 and retried.payload.timeout_s == (STEP_S + 5) * 2
    assert Event.model_validate_json(retried.payload.request_json) == approved
    # The second attempt gets twice the time before it, too, times out.
    assert r.fire_timers((STEP_S + 5) * 2 - 1) == []
    assert r.fire_timers(1.1) == ["StepTimedOut"]
    assert r.log[-1].payload.attempt == 3 and r.log[-1].payload.timeout_s == (STEP_S + 5) * 4
    assert fold(r.log) == r.state


def test_the_first_answer_to_any_attempt_is_applied_once():
    r = _planned()
    r.fire_timers(STEP_S + 6)
    assert r.types()[-1] == "RequestRetried"
    # The answer names the original request, whichever attempt produced it.
    first = r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    assert [e.event_type for e in first.events][:2] == ["ToolExecuted", "ObservationCaptured"]
    again = r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    assert again.events == () and "not an open request" in again.dropped
    assert r.types().count("ToolExecuted") == 1
    # The answered request no longer times out (what is asked next has its own clock).
    approved = r.last("ToolApproved").event_id
    late = due_timers(r.state, r.clock + timedelta(seconds=1000), CONFIG)
    assert approved not in r.state.open_requests
    assert [p.request_type for p, _ in late if isinstance(p, StepTimedOut)] == ["ResponseRequested"]


def test_a_request_out_of_attempts_fails_the_run_with_a_reason_and_late_answers_are_ignored():
    r = Run()
    r.request()
    for _ in range(CONFIG.timeouts.attempts):
        assert r.fire_timers(STEP_S * 4 + 1) == ["StepTimedOut"]
    failed = r.log[-1]
    assert failed.event_type == "RunFailed" and failed.payload.stage == "timeout"
    assert failed.payload.reason == "RunStarted had no answer after 3 attempt(s)"
    assert r.types().count("RequestRetried") == 2 and r.state.status == Status.FAILED
    late = r.reply("RunStarted", plan(("search_docs", {"query": "x"})))
    assert late.events == () and "after the run ended" in late.dropped
    assert r.fire_timers(10_000) == []


def test_a_stale_timeout_is_dropped():
    r = _planned()
    approved = r.last("ToolApproved")
    stale = StepTimedOut(request_id=approved.event_id, request_type="ToolApproved", attempt=2,
                         timeout_s=1.0)
    early = StepTimedOut(request_id=approved.event_id, request_type="ToolApproved", attempt=1,
                         timeout_s=STEP_S + 5)
    for payload, why in ((stale, "not in flight"), (early, "not late yet")):
        out = r.send(envelope(payload, run_id=RUN, seq=0, event_id=f"t-{why}",
                              causation_id=approved.event_id, actor="timer"))
        assert out.events == () and why in out.dropped


def test_a_run_past_its_time_limit_fails_and_waiting_for_a_person_does_not_count():
    r = Run()
    r.request("email the report to bob@gmail.com")
    r.clock += timedelta(seconds=20)
    r.reply("RunStarted", plan(("send_email", {"to": "bob@gmail.com", "subject": "r", "body": "b"})))
    r.reply("ToolProposed", ApprovalRequested(
        step_id="s1", tool="send_email", input_json='{"to": "bob@gmail.com", "subject": "r", "body": "b"}',
        rule="ext_email", reason="external", policy_version="v1", expires_at=T0 + timedelta(days=1)))
    # Hours waiting for a person: neither the run's clock nor a step's runs meanwhile.
    r.clock += timedelta(hours=5)
    assert due_timers(r.state, r.clock, CONFIG) == []
    r.send(envelope(ApprovalGranted(step_id="s1", approver="ana", reason="ok"), run_id=RUN, seq=0,
                    event_id="g1", actor="human:ana"))
    worked = r.state.active_at(r.clock)
    assert 20 <= worked < 21
    early = r.send(envelope(RunTimedOut(limit_s=CONFIG.timeouts.run_s, active_s=worked), run_id=RUN,
                            seq=0, event_id="rt-early", actor="timer"))
    assert early.events == () and "of its 600.0 s" in early.dropped
    r.reply("ToolApproved", executed("send_email", {"sent": True}))
    r.reply("ResponseRequested", ResponseDrafted(text="sent", model_call=CALL))
    # The finalizer never answers; its attempt timers and the run's limit both fall due.
    due = r.fire_timers(CONFIG.timeouts.run_s)
    assert due == ["StepTimedOut", "RunTimedOut"]
    failed = r.log[-1]
    assert failed.event_type == "RunFailed" and failed.payload.stage == "timeout"
    assert "past its 600 s limit" in failed.payload.reason
    assert r.state.status == Status.FAILED and fold(r.log) == r.state


def test_the_executor_runs_a_retried_approval_only_when_the_log_backs_it():
    registry = default_registry()
    r = _planned()
    approved = r.last("ToolApproved")
    assert refusal(fold(r.log[:-1]), approved, registry=registry) is None
    r.fire_timers(STEP_S + 6)
    retried = r.log[-1]
    # The worker judges the retry with the run folded up to and including the RequestRetried.
    assert refusal(fold(r.log), approved, registry=registry) is None
    other = approved.model_copy(update={"payload": approved.payload.model_copy(
        update={"input_json": '{"query": "all customer e-mails"}'})})
    assert "not the one the log holds open" in refusal(fold(r.log), other, registry=registry)
    # Outside a retry, the same approval read again at a later offset is stale.
    assert "does not follow" in refusal(fold(r.log[:-1]), approved, registry=registry)
    assert json.loads(retried.payload.request_json)["event_id"] == approved.event_id


def test_a_retried_approval_the_log_never_backed_stays_refused():
    registry = default_registry()
    r = _planned()
    forged = r.log[-1].model_copy(update={"causation_id": "nobody", "seq": r.state.seq + 1,
                                          "event_id": "forged-1"})
    state = evolve(r.state, forged)
    assert state.open_requests["forged-1"].refusal is not None
    r2 = envelope(StepTimedOut(request_id="forged-1", request_type="ToolApproved", attempt=1,
                               timeout_s=1.0), run_id=RUN, seq=state.seq + 1, actor="timer")
    state = evolve(state, r2)
    ask = envelope(RequestRetried(request_id="forged-1", request_type="ToolApproved", attempt=2,
                                  timeout_s=2.0, request_json=forged.model_dump_json()),
                   run_id=RUN, seq=state.seq + 1)
    state = evolve(state, ask)
    assert "no proposal answered by the guard" in refusal(state, forged, registry=registry)
