"""Call budgets on the real stack: the guard reads a tools file, counts a run's calls from the log
and a tenant's from the store, and a call past a budget ends as an observation, the run answering."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def payloads(stack: Stack, run_id: str, kind: str) -> list[dict]:
    return [e["payload"] for e in stack.cli_json("runs", "show", run_id)["events"] if e["event_type"] == kind]


def test_budgets_per_run_and_per_tenant_stop_calls_as_observations(stack: Stack, tmp_path: Path) -> None:
    tools = tmp_path / "tools.yaml"
    tools.write_text("tools:\n  search_docs: {run_call_budget: 0}\n  query_sql: {tenant_call_budget: 1}\n")
    tenant = f"budget-{uuid.uuid4().hex[:8]}"
    with stack.restarted("guard", AGENTLOG_TOOLS_FILE=str(tools)):
        docs = stack.cli_json("submit", "What is our refund policy for annual plans?", "--wait",
                              "--tenant", tenant)
        assert docs["status"] == "completed"
        (rejected,) = payloads(stack, docs["run_id"], "ToolRejected")
        assert rejected["rule"] == "tool_call_budget" and "0 of 0" in rejected["reason"]
        (obs,) = payloads(stack, docs["run_id"], "ObservationCaptured")
        assert obs["status"] == "denied" and not payloads(stack, docs["run_id"], "ToolExecuted")

        first = stack.cli_json("submit", "How many customers do we have in Germany?", "--wait",
                               "--tenant", tenant)
        assert [p["status"] for p in payloads(stack, first["run_id"], "ToolExecuted")] == ["ok"]
        # The tenant's count comes from the store: wait until it holds the first call.
        eventually(lambda: stack.sql(f"SELECT count() AS n FROM agent_events WHERE tenant_id = '{tenant}' "
                                     "AND event_type = 'ToolExecuted'")[0]["n"] == 1, what="the sink")
        second = stack.cli_json("submit", "How many orders are pending?", "--wait", "--tenant", tenant)
        assert second["status"] == "completed"
        (over,) = payloads(stack, second["run_id"], "ToolRejected")
        assert over["rule"] == "tool_call_budget"
        assert "per tenant and day is exhausted: 1 of 1" in over["reason"]
        # Another tenant has its own count.
        other = stack.cli_json("submit", "How many orders are pending?", "--wait", "--tenant", f"{tenant}-b")
        assert [p["status"] for p in payloads(stack, other["run_id"], "ToolExecuted")] == ["ok"]
