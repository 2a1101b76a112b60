"""`agentlog policy backtest` on the real stack: recorded decisions from ClickHouse, replayed
through a candidate policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policies import DEFAULT_POLICY_PATH
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration

# Allows what the default policy denies (destructive SQL) or parks (external e-mail).
LAX = """\
version: 1
default: allow
rules:
  - name: reviewed_sql_is_fine
    when: {tool: query_sql}
    action: allow
  - name: cap_ticket_creation_rate
    when: {tool: create_ticket, run_metrics: {tickets_created_gt: 3}}
    action: deny
"""


def mine(report: dict[str, Any], tenant: str) -> list[dict[str, Any]]:
    # The session's stack is shared with other tests; look only at this test's tenant.
    return [g for g in report["by_group"] if g["tenant_id"] == tenant]


def test_backtest_reports_flips_by_rule_tool_and_tenant(stack: Stack, tmp_path: Path) -> None:
    tenant = f"backtest-{uuid.uuid4().hex[:8]}"
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    requests = {
        "Drop the orders table.": "completed",
        "What is our refund policy for annual plans?": "completed",
        "Send an email to jane.doe@gmail.com about the delayed shipment.": "awaiting_approval",
    }
    runs = {}
    for text, status in requests.items():
        out = stack.cli_json("submit", text, "--wait", "--tenant", tenant)
        assert out["status"] == status, (text, out)
        runs[text] = out["run_id"]
    eventually(lambda: stack.sql(
        "SELECT count() AS n FROM agent_events WHERE tenant_id = '" + tenant + "' AND event_type IN "
        "('ToolApproved', 'ToolRejected', 'ApprovalRequested')")[0]["n"] >= 3,
        what="the three decisions in ClickHouse")

    new = tmp_path / "lax.yaml"
    new.write_text(LAX)
    report = stack.cli_json("policy", "backtest", "--policy", str(new), "--since", since)
    assert report["policy"] == str(new) and report["policy_version"].startswith("sha256:")
    assert report["replayed"] >= 3
    assert mine(report, tenant) == [
        {"old_action": "deny", "new_action": "allow", "new_rule": "reviewed_sql_is_fine",
         "tool": "query_sql", "tenant_id": tenant, "count": 1},
        {"old_action": "require_human_approval", "new_action": "allow", "new_rule": None,
         "tool": "send_email", "tenant_id": tenant, "count": 1},
    ]
    flipped = {(f["run_id"], f["step_id"]): f for f in report["flipped"] if f["tenant_id"] == tenant}
    assert set(flipped) == {(runs["Drop the orders table."], "s1"),
                            (runs["Send an email to jane.doe@gmail.com about the delayed shipment."], "s1")}
    drop = flipped[(runs["Drop the orders table."], "s1")]
    assert drop["old_rule"] == "deny_destructive_sql" and drop["old_policy_version"].startswith("sha256:")

    text = " ".join(stack.cli("policy", "backtest", "--policy", str(new), "--since", since).stdout.split())
    assert f"{report['flips']} would flip" in text and "reviewed_sql_is_fine" in text, text

    same = tmp_path / "same.yaml"
    same.write_bytes(DEFAULT_POLICY_PATH.read_bytes())
    unchanged = stack.cli_json("policy", "backtest", "--policy", str(same), "--since", since)
    assert unchanged["replayed"] >= 3 and mine(unchanged, tenant) == []
    assert unchanged["flips"] == 0


def test_backtest_with_an_invalid_policy_exits_1(stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: r, when: {tool: query_sql, input: "
                   "{sql_matches_regex: '(drop'}}, action: deny}\n")
    result = stack.cli("policy", "backtest", "--policy", str(bad), check=False)
    assert result.returncode == 1 and "rule 'r' (rules[0])" in result.stderr
