"""`agentlog demo`: the whole pipeline on the embedded default, told as it happens."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from rich.panel import Panel

from processors.planner_scripted import SAMPLE_REQUESTS
from schemas.events import Event, ResponseFinalized
from streams.alerts_demo import show_alert
from streams.api_keys import local_key_file
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError, run_query
from streams.render import rows_table, timeline_table
from streams.runs import request_run, wait_for_run
from streams.supervisor import SupervisorError, up

__all__ = ["demo"]

FIGURES = {
    "Runs by last event": """
        SELECT last_event, count() AS runs FROM (
          SELECT run_id, argMax(event_type, seq) AS last_event FROM agent_events
          WHERE run_id IN {runs:Array(String)} GROUP BY run_id)
        GROUP BY last_event ORDER BY last_event""",
    "Policy decisions": """
        SELECT event_type AS decision, JSONExtractString(payload, 'tool') AS tool,
               ifNull(nullIf(JSONExtractString(payload, 'rule'), ''), '(default)') AS rule,
               count() AS calls
        FROM agent_events WHERE run_id IN {runs:Array(String)}
          AND event_type IN ('ToolApproved', 'ToolRejected', 'ApprovalRequested')
        GROUP BY decision, tool, rule ORDER BY decision, tool""",
    "Time to first action (RunStarted → first ToolProposed)": """
        SELECT count() AS runs, round(quantile(0.5)(ms)) AS p50_ms, max(ms) AS max_ms FROM (
          SELECT run_id, dateDiff('millisecond', minIf(event_time, event_type = 'RunStarted'),
                                   minIf(event_time, event_type = 'ToolProposed')) AS ms
          FROM agent_events WHERE run_id IN {runs:Array(String)} GROUP BY run_id)""",
}

_STORED = "SELECT count() FROM agent_events WHERE run_id IN {runs:Array(String)}"


@click.command("demo")
@pass_ctx
def demo(ctx: Context) -> None:
    """Start the stack, run five sample requests and show what happened."""
    con, settings = ctx.console, ctx.settings
    con.rule("[bold]agentlog demo")
    try:
        up(settings, say=lambda m: con.print(f"[dim]{m}[/]"))
    except SupervisorError as exc:
        fail(str(exc))
    con.print(f"stack up · Kafka [bold]{settings.bootstrap_servers}[/] · state in {settings.home}\n")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    submitted = []
    for name, text in SAMPLE_REQUESTS.items():
        run_id = request_run(settings, ctx.producer, ctx.codec, text=text, tenant_id="demo",
                             route="demo", idempotency_key=f"demo-{stamp}-{name}", requested_by="demo")
        submitted.append((name, text, run_id))
    timelines: dict[str, list[Event]] = {}
    for name, text, run_id in submitted:
        events = wait_for_run(settings, ctx.codec, run_id, timeout_s=60)
        timelines[run_id] = events
        con.print(timeline_table(run_id, events, title=f"{name}: “{text}”"))
        final = next((e.payload for e in reversed(events) if isinstance(e.payload, ResponseFinalized)), None)
        if final is not None:
            con.print(Panel(final.text, title="answer", title_align="left", expand=False))
        con.print()
    _figures(ctx, timelines)
    show_alert(ctx)
    parked = [r for r, ev in timelines.items() if ev and ev[-1].event_type == "ApprovalRequested"]
    con.rule("[bold]go on")
    lines = []
    if parked:
        lines.append(f"approve the parked e-mail:   .venv/bin/agentlog approvals approve {parked[0]} --wait")
    lines += [
        f"see one timeline again:      .venv/bin/agentlog runs show {submitted[0][2]}",
        'ask something yourself:      .venv/bin/agentlog submit "how many customers are in Germany?" --wait',
        ('query the store:             .venv/bin/agentlog sql "SELECT event_type, count() FROM agent_events '
         'GROUP BY event_type"'),
        (f"HTTP gateway:                curl -XPOST localhost:{settings.gateway_port}/v1/runs "
         f"-H \"Authorization: Bearer $(cat {local_key_file(settings)})\" "
         "-H 'content-type: application/json' -d '{\"text\": \"open a ticket: printer on fire\"}'"),
        "stop everything:             .venv/bin/agentlog down",
    ]
    for line in lines:
        con.print("  " + line, soft_wrap=True)


def _figures(ctx: Context, timelines: dict[str, list[Event]]) -> None:
    """Figures from ClickHouse, once the sink holds every event shown above."""
    runs = list(timelines)
    expected = sum(len(ev) for ev in timelines.values())
    params = {"runs": runs}
    deadline = time.monotonic() + 30
    stored = 0
    try:
        while time.monotonic() < deadline:
            stored = run_query(ctx.settings, _STORED, parameters=params, sink_running=True).rows[0][0]
            if stored >= expected:
                break
            time.sleep(0.3)
        ctx.console.rule("[bold]from ClickHouse (agent_events)")
        ctx.console.print(f"{stored} events stored for these {len(runs)} runs (the log holds {expected})\n")
        for title, sql in FIGURES.items():
            result = run_query(ctx.settings, sql, parameters=params, sink_running=True)
            ctx.console.print(rows_table(result.columns, result.rows, title=title))
    except QueryError as exc:
        ctx.console.print(f"[red]ClickHouse query failed:[/] {exc}")
