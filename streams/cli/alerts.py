"""`agentlog alerts list | check | rules`: what fired, whether something still fires, and the rules.

`check` exits 1 while a page- or block-level alert fires, 0 otherwise, so cron and CI can act
on it; 2 when the store cannot be asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from policies.alert_rules import CostRiseRule, RulesError, ViolationRateRule, load_rules
from schemas.alerts import FIRING_FAILS
from sinks.alerts import ALERTS_SQL
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError, run_query
from streams.render import rows_table
from streams.supervisor import alive, processes

__all__ = ["alerts"]


@click.group("alerts")
def alerts() -> None:
    """Alerts raised by the alerting processor from the rules file."""


def _alerts(ctx: Context, *, firing_only: bool, limit: int) -> list[dict[str, Any]]:
    sink = next(p for p in processes(ctx.settings) if p.name == "sink")
    try:
        result = run_query(ctx.settings, ALERTS_SQL, sink_running=alive(ctx.settings, sink),
                           parameters={"firing_only": int(firing_only), "limit": limit})
    except QueryError as exc:
        fail(f"alerts not read: {exc}", code=2)
    rows = result.as_dicts()
    for row in rows:
        row["firing"] = bool(row["firing"])
        row["resolved_at"] = row["resolved_at"] or None
    return rows


_SEVERITY_STYLE = {"page": "bold red", "block": "bold magenta", "warn": "yellow"}


def _when(value: Any) -> str:
    """`MM-DD HH:MM:SS`: the year takes room and says little in a list of alerts."""
    text = str(value or "")
    return text[5:19] if len(text) >= 19 else text


def _table(rows: list[dict[str, Any]], title: str) -> Group:
    """One alert in two lines: who, what and when, then its summary, indented. A table would
    squeeze the summary, which is what a person reads, into a narrow column."""
    lines: list[Text] = [Text(f"{title} (times UTC, raised → resolved)", style="bold")]
    for r in rows:
        head = Text("  ")
        head.append(f"{r['severity'].upper():<5}", style=_SEVERITY_STYLE.get(r["severity"], ""))
        head.append("  ")
        head.append("FIRING  " if r["firing"] else "resolved", style="bold" if r["firing"] else "dim")
        raised, resolved = _when(r["raised_at"]), _when(r["resolved_at"])
        if resolved[:5] == raised[:5]:
            resolved = resolved[6:]  # the same day: its time is enough
        head.append(f"  {r['rule']} · {r['scope']} · {raised}" + (f" → {resolved}" if resolved else ""))
        lines += [head, Text(f"         {r['summary']}", style="dim")]
    return Group(*lines)


@alerts.command("list")
@click.option("--firing", is_flag=True, help="Only the alerts still firing.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of alerts.")
@pass_ctx
def list_cmd(ctx: Context, firing: bool, limit: int, as_json: bool) -> None:
    """Alerts, newest first: raised, and resolved or still firing."""
    rows = _alerts(ctx, firing_only=firing, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    ctx.console.print(_table(rows, "alerts"))
    ctx.console.print(f"[dim]{len(rows)} alert(s), {sum(r['firing'] for r in rows)} firing[/]")


@alerts.command("check")
@click.option("--json", "as_json", is_flag=True, help="The verdict and the firing alerts as JSON.")
@pass_ctx
def check_cmd(ctx: Context, as_json: bool) -> None:
    """Exit 1 while a page- or block-level alert fires, 0 otherwise (a warning does not fail)."""
    firing = _alerts(ctx, firing_only=True, limit=100_000)
    failing = [r for r in firing if r["severity"] in FIRING_FAILS]
    if as_json:
        click.echo(json.dumps({"ok": not failing, "failing": failing,
                               "warnings": [r for r in firing if r not in failing]}, default=str))
    elif firing:
        ctx.console.print(_table(firing, "firing alerts"))
        click.echo("FAIL" if failing else "OK (warnings only)")
    else:
        click.echo("OK: no alert firing")
    if failing:
        raise SystemExit(1)


@alerts.command("rules")
@click.option("--file", "rules_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Rules file to check (default: the configured one, AGENTLOG_ALERT_RULES_FILE).")
@click.option("--json", "as_json", is_flag=True, help="The rules as JSON.")
@pass_ctx
def rules_cmd(ctx: Context, rules_file: Path | None, as_json: bool) -> None:
    """Validate a rules file and show its rules; exit 1 with the line and field of an error."""
    path = rules_file or ctx.settings.alert_rules_file
    try:
        loaded = load_rules(path)
    except RulesError as exc:
        fail(str(exc))
    docs = [{"kind": type(r).__name__, **vars(r)} for r in loaded.rules]
    if as_json:
        click.echo(json.dumps({"version": loaded.version, "source": loaded.source, "rules": docs}))
        return
    rows = []
    for r in loaded.rules:
        if isinstance(r, ViolationRateRule):
            cond = (f"violations per 100 runs > {r.factor:g}× the trailing {r.baseline_s:g} s; "
                    f"window {r.window_s:g} s, ≥ {r.min_runs} runs (baseline ≥ {r.min_baseline_runs})")
        elif isinstance(r, CostRiseRule):
            cond = (f"cost per successful run > previous window + {r.rise * 100:g} %; "
                    f"window {r.window_s:g} s, ≥ {r.min_runs} ended runs")
        else:
            cond = "a candidate's latest replay gate failed"
        rows.append([r.name, r.severity.upper(), ", ".join(getattr(r, "scopes", ("candidate",))), cond])
    ctx.console.print(rows_table(["rule", "severity", "scopes", "condition"], rows,
                                 title=f"{loaded.source} ({loaded.version})"))
