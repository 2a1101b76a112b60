"""The demo's alert: one alert raised and resolved through the whole alerting path.

A fresh installation has no seven-day baseline, so the violation-rate page cannot fire in a
demo; the block rule can: a candidate fails its replay gate, `agentlog gate` records the
verdict on the gates topic, the alerting processor raises a BLOCK alert on agentlog.alerts, the
sink stores it and `agentlog alerts list` shows it. A passing verdict then resolves it, so the
demo leaves nothing firing.
"""

from __future__ import annotations

import time
from typing import Any

from processors.replay.gate import Check
from sinks.alerts import ALERTS_SQL
from streams.alerts_gates import record_verdict
from streams.cli.common import Context
from streams.query_api import QueryError, run_query

__all__ = ["show_alert"]

CANDIDATE = "demo-candidate"


def _block(ctx: Context, *, firing: bool, alert_id: str | None = None,
           timeout_s: float = 30.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = run_query(ctx.settings, ALERTS_SQL, parameters={"firing_only": 0, "limit": 50},
                         sink_running=True).as_dicts()
        found = next((r for r in rows if r["scope"] == f"candidate:{CANDIDATE}"
                      and bool(r["firing"]) is firing and alert_id in (None, r["alert_id"])), None)
        if found is not None:
            return found
        time.sleep(0.5)
    return None


def show_alert(ctx: Context) -> None:
    """Fail a demo candidate's gate, show the BLOCK alert it raises, then let it pass again."""
    con = ctx.console
    con.rule("[bold]an alert (policies/alerts.yaml)")
    checks = [Check("quality", ">= 0.8", "0.610", False, "demo: the candidate's answers got worse")]
    why = record_verdict(ctx.settings, lambda: ctx.producer, candidate=CANDIDATE, checks=checks,
                         scores="(demo)")
    if why is not None:
        con.print(f"[red]gate verdict not recorded:[/] {why}")
        return
    try:
        raised = _block(ctx, firing=True)
        if raised is None:
            con.print("[yellow]no alert within 30 s: is the alerting service up? (agentlog status)[/]")
            return
        con.print(f"[bold red]{raised['severity'].upper()}[/] {raised['rule']} · {raised['scope']} · raised "
                  f"{str(raised['raised_at'])[11:19]} UTC, id {raised['alert_id'][:12]}…")
        con.print(f"  {raised['summary']}", soft_wrap=True)
        con.print("  [dim]while it fires, `agentlog alerts check` exits 1 (`alerts list` shows it)[/]")
        record_verdict(ctx.settings, lambda: ctx.producer, candidate=CANDIDATE,
                       checks=[Check("quality", ">= 0.8", "0.910", True)], scores="(demo)")
        resolved = _block(ctx, firing=False, alert_id=raised["alert_id"])
        con.print("the candidate passed its gate again: the alert is "
                  + ("[green]resolved[/]" if resolved else "[yellow]still firing[/]"))
    except QueryError as exc:
        con.print(f"[red]alerts not read:[/] {exc}")
