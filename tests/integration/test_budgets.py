"""A tenant's daily budget stops runs before any model is called, with a clear answer."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration

SPENT = ("SELECT count() AS n FROM agent_events "
         "WHERE tenant_id = 'frugal' AND event_type = 'RunCompleted'")


def test_a_tenant_over_its_daily_budget_gets_budget_exceeded_and_a_clear_answer(stack: Stack):
    with stack.restarted("planner", AGENTLOG_TENANT_BUDGETS='{"frugal": 0.001}'):
        first = stack.cli_json("submit", "How many customers do we have?", "--wait", "--tenant", "frugal")
        assert first["status"] == "completed"  # one query_sql: $0.001, the whole day's budget
        eventually(lambda: stack.sql(SPENT)[0]["n"] == 1, what="the sink to hold the first run")
        second = stack.cli_json("submit", "How many orders are pending?", "--wait", "--tenant", "frugal")
        other = stack.cli_json("submit", "How many orders are pending?", "--wait", "--tenant", "rich")
    assert second["status"] == "failed" and other["status"] == "completed"
    run = stack.cli_json("runs", "show", second["run_id"])
    kinds = [e["event_type"] for e in run["events"]]
    assert kinds == ["RunStarted", "BudgetExceeded", "ResponseFinalized", "RunFailed"]
    over = run["events"][1]["payload"]
    assert over["limit"] == "tenant_daily_usd" and over["limit_value"] == 0.001 and over["spent"] >= 0.001
    assert run["events"][1]["actor"] == "planner"
    assert "budget" in run["answer"] and run["events"][-1]["payload"]["stage"] == "budget"
