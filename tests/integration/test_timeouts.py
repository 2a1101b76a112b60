"""A worker that does not answer is asked again with more time each attempt; out of attempts,
the run fails with a reason. On the real stack, with the planner stopped."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def _types(stack: Stack, run_id: str) -> list[str]:
    return [e["event_type"] for e in stack.cli_json("runs", "show", run_id)["events"]]


def test_an_unanswered_request_is_retried_and_out_of_attempts_the_run_fails(stack: Stack):
    fast = {"AGENTLOG_STEP_TIMEOUT_S": "2", "AGENTLOG_STEP_ATTEMPTS": "3", "AGENTLOG_STEP_BACKOFF": "2"}
    with stack.restarted("orchestrator", **fast):
        stack.stop("planner")
        try:
            lost = stack.cli_json("submit", "What is our refund policy for annual plans?")["run_id"]
            eventually(lambda: _types(stack, lost)[-1] == "RunFailed", timeout=60,
                       what="the run without a planner to fail")
            assert _types(stack, lost) == [
                "RunStarted", "StepTimedOut", "RequestRetried", "StepTimedOut", "RequestRetried",
                "StepTimedOut", "RunFailed"]
            run = stack.cli_json("runs", "show", lost)
            events = run["events"]
            assert run["status"] == "failed"
            assert events[-1]["payload"] == {"stage": "timeout",
                                             "reason": "RunStarted had no answer after 3 attempt(s)",
                                             "cost_usd": 0.0}
            assert [e["payload"]["timeout_s"] for e in events if e["event_type"] == "StepTimedOut"] \
                == [2.0, 4.0, 8.0]
            assert {e["actor"] for e in events if e["event_type"] == "StepTimedOut"} == {"timer"}

            saved = stack.cli_json("submit", "Open a ticket: the printer on floor 3 is on fire")["run_id"]
            eventually(lambda: "RequestRetried" in _types(stack, saved), timeout=30,
                       what="the planner's request to be asked again")
        finally:
            stack.cli("up")  # the planner back: it answers what it finds unanswered
        eventually(lambda: _types(stack, saved)[-1] == "RunCompleted", timeout=60,
                   what="the retried run to complete once the planner is back")
    types = _types(stack, saved)
    # Asked twice (the request and its retry), answered and applied once.
    assert types.count("PlanGenerated") == 1 and types.count("ToolExecuted") == 1
    # The failed run stays failed: the planner's late answer to it was ignored.
    assert _types(stack, lost)[-1] == "RunFailed" and "PlanGenerated" not in _types(stack, lost)
