"""`agentlog metrics`: the five metrics by tenant, route, model and day, and the replay delta by
candidate; the definitions are in sinks/metrics.py and the README."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from sinks.metrics import (
    REPLAY_COLUMNS,
    Query,
    metrics_query,
    parse_keys,
    parse_time,
    replay_delta_query,
)
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError, run_query
from streams.settings import Settings
from streams.supervisor import alive, processes

__all__ = ["metrics", "metrics_table", "replay_table", "DEFINITIONS", "fetch"]

DEFINITIONS = (
    "ok (succeeded): ended in RunCompleted, with no PlanRejected, BudgetExceeded, ToolRejected, "
    "ApprovalDenied or ApprovalExpired · viol (violations): ToolRejected + ApprovalRequested, /100 per "
    "100 runs · $/ok: the cost of all the runs ÷ the successful ones · ttfa (time to first action): "
    "RunStarted → first ToolApproved"
)
"""The definitions, in one line under every table."""

def fetch(settings: Settings, query: Query) -> list[dict[str, Any]]:
    """The rows of `query`, from the store (through the sink when it runs: it owns chDB)."""
    sink = next(p for p in processes(settings) if p.name == "sink")
    return run_query(settings, query.sql, parameters=query.parameters,
                     sink_running=alive(settings, sink)).as_dicts()


_KEY_HEADINGS = {"tenant": "tenant", "route": "route", "model": "model", "day": "day (UTC)"}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def _rate(value: float | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text(f"{value:.0%}", style="green" if value >= 0.9 else "yellow" if value >= 0.5 else "red")


def _metric_cells(row: dict[str, Any]) -> list[Text | str]:
    per_100 = row["violation_rate_per_100"]
    violations = Text(str(row["violations"]), style="red" if row["violations"] else "")
    per_success = row["cost_per_success_usd"]
    return [str(row["runs"]), str(row["successes"]), _rate(row["success_rate"]), violations,
            Text("-", style="dim") if per_100 is None else f"{per_100:.1f}",
            f"{row['cost_usd']:.4f}", Text("-", style="dim") if per_success is None else f"{per_success:.4f}",
            _ms(row["ttfa_p50_ms"]), _ms(row["ttfa_p95_ms"])]


def metrics_table(rows: Sequence[dict[str, Any]], keys: Sequence[str], *, title: str) -> Table:
    """The metrics rows as a person reads them: rates as percentages, times in ms or s."""
    # Short headings and no vertical rules: four keys and nine figures fit 120 columns, and a
    # key is never cut short (the figures give way first).
    table = Table(title=title, title_justify="left", caption=DEFINITIONS, caption_justify="left",
                  caption_style="dim", box=box.SIMPLE_HEAD)
    cells = [[str(row[k]) if row[k] not in (None, "") else "(none)" for k in keys] for row in rows]
    for i, key in enumerate(keys):
        widest = max([len(_KEY_HEADINGS[key]), *(len(c[i]) for c in cells)])
        table.add_column(_KEY_HEADINGS[key], style="bold", no_wrap=True, min_width=widest)
    for heading in ("runs", "ok", "ok %", "viol", "/100", "cost $", "$/ok", "ttfa p50", "ttfa p95"):
        table.add_column(heading, justify="right", no_wrap=True)
    for keyed, row in zip(cells, rows, strict=True):
        table.add_row(*keyed, *_metric_cells(row))
    return table


def replay_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="replay delta: the candidate's quality minus the baseline's, per candidate and day",
                  title_justify="left")
    for name in REPLAY_COLUMNS:
        table.add_column(name.replace("_", " "), justify="left" if name in ("candidate", "day") else "right")
    for row in rows:
        delta = row["replay_delta"]
        table.add_row(str(row["candidate"]), str(row["day"]), str(row["replays"]), str(row["runs"]),
                      f"{row['baseline_quality']:.3f}", f"{row['candidate_quality']:.3f}",
                      Text(f"{delta:+.3f}", style="green" if delta > 0 else "red" if delta < 0 else ""))
    return table


def _keys(_c: click.Context, _p: click.Parameter, value: str | None) -> tuple[str, ...]:
    try:
        return parse_keys(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _moment(_c: click.Context, _p: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, now=datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_SINCE = click.option("--since", callback=_moment, metavar="T",
                      help="From this moment (ISO date or time, UTC; or 30m, 12h, 7d, 2w ago).")
_UNTIL = click.option("--until", callback=_moment, metavar="T", help="Up to this moment (excluded).")
_JSON = click.option("--json", "as_json", is_flag=True, help="A JSON list of objects.")


def _query(make: Any, **options: Any) -> Query:
    try:
        return make(**options)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _range_title(since: datetime | None, until: datetime | None) -> str:
    if since is None and until is None:
        return "all runs"
    start = f"from {since:%Y-%m-%d %H:%M}" if since else ""
    end = f"until {until:%Y-%m-%d %H:%M}" if until else ""
    return "runs started " + " ".join(p for p in (start, end) if p) + " UTC"


def _rows(ctx: Context, query: Query) -> list[dict[str, Any]]:
    try:
        return fetch(ctx.settings, query)
    except QueryError as exc:
        fail(f"query failed: {exc}")


@click.group("metrics", invoke_without_command=True)
@click.option("--by", callback=_keys, metavar="KEYS",
              help="Group by some of tenant,route,model,day (model: the planner's); none: totals.")
@_SINCE
@_UNTIL
@_JSON
@pass_ctx
@click.pass_context
def metrics(click_ctx: click.Context, ctx: Context, by: tuple[str, ...], since: datetime | None,
            until: datetime | None, as_json: bool) -> None:
    """Success rate, policy violations, cost per successful run and time to first action, of the
    runs started in a time range (their day is their start's, UTC)."""
    if click_ctx.invoked_subcommand is not None:
        return
    rows = _rows(ctx, _query(metrics_query, by=by, since=since, until=until))
    if as_json:
        click.echo(json.dumps(rows))
        return
    ctx.console.print(metrics_table(rows, by, title=f"metrics · {_range_title(since, until)}"))
    ctx.console.print(f"[dim]{len(rows)} row(s)[/]")


@metrics.command("replay")
@_SINCE
@_UNTIL
@_JSON
@pass_ctx
def replay_cmd(ctx: Context, since: datetime | None, until: datetime | None, as_json: bool) -> None:
    """The replay delta per candidate and day, from the scores `agentlog score` stored."""
    rows = _rows(ctx, _query(replay_delta_query, since=since, until=until))
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        ctx.console.print("no replay scores stored yet: agentlog replay … --candidate NAME, "
                          "then agentlog score")
        return
    ctx.console.print(replay_table(rows))
