"""`agentlog demo`: the whole pipeline on the embedded default, told as it happens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from processors.planner_scripted import SAMPLE_REQUESTS
from processors.spans import trace_id_of
from schemas.events import Event, ResponseFinalized
from sinks.metrics import metrics_query, replay_delta_query, run_facts_query
from streams.alerts_demo import show_alert
from streams.api_keys import KeyStore, api_keys_file, ensure_local_key, local_key_file
from streams.cli.common import Context, fail, pass_ctx
from streams.cli.demo_memory import show_memory
from streams.cli.metrics import fetch
from streams.query_api import QueryError, run_query
from streams.render import timeline_table
from streams.runs import request_run, wait_for_run
from streams.supervisor import SupervisorError, up
from streams.telemetry import trace_destination

__all__ = ["demo"]

_STORED = "SELECT count() FROM agent_events WHERE run_id IN {runs:Array(String)}"


@click.command("demo")
@pass_ctx
def demo(ctx: Context) -> None:
    """Start the stack, run five sample requests and show what happened, then a fact one run of an
    opted-in tenant remembers and a later run uses."""
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
    show_memory(ctx, stamp=stamp)
    _metrics(ctx, timelines, {run_id: name for name, _text, run_id in submitted})
    _traces(ctx, timelines, {run_id: name for name, _text, run_id in submitted})
    show_alert(ctx)
    parked = [r for r, ev in timelines.items() if ev and ev[-1].event_type == "ApprovalRequested"]
    con.rule("[bold]go on")
    lines = []
    if parked:
        lines.append(f"approve the parked e-mail:   .venv/bin/agentlog approvals approve {parked[0]} --wait")
    lines += [
        f"see one timeline again:      .venv/bin/agentlog runs show {submitted[0][2]}",
        'ask something yourself:      .venv/bin/agentlog submit "how many customers are in Germany?" --wait',
        "every run's metrics:         .venv/bin/agentlog metrics --by tenant,route,model,day",
        "alerts raised and resolved:  .venv/bin/agentlog alerts list",
        ('query the store:             .venv/bin/agentlog sql "SELECT event_type, count() FROM agent_events '
         'GROUP BY event_type"'),
        (f"HTTP gateway:                curl -XPOST localhost:{settings.gateway_port}/v1/runs "
         f"-H \"Authorization: Bearer $(cat {local_key_file(settings)})\" "
         "-H 'content-type: application/json' -d '{\"text\": \"open a ticket: printer on fire\"}'"),
        "stop everything:             .venv/bin/agentlog down",
    ]
    if not trace_destination():
        lines.insert(-1, "spans to a collector:        .venv/bin/agentlog down && "
                         "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 make demo")
    for line in lines:
        con.print("  " + line, soft_wrap=True)
    # The demo's runs are tenant `demo`'s: the console shows them to a key of that tenant.
    key = ensure_local_key(KeyStore(api_keys_file(settings)), settings.path("gateway", "demo_api_key"),
                           tenant_id="demo", name="demo-console")
    con.print(f"\n[bold]web console:[/] http://127.0.0.1:{settings.gateway_port}/ · sign in with the demo "
              f"tenant's key {key}" + (" (the parked e-mail waits under Approvals)" if parked else ""),
              soft_wrap=True)


def _metrics(ctx: Context, timelines: dict[str, list[Event]], names: dict[str, str]) -> None:
    """The five metrics of the runs above, from ClickHouse, once the sink holds every event shown."""
    runs = list(timelines)
    expected = sum(len(ev) for ev in timelines.values())
    deadline = time.monotonic() + 30
    stored = 0
    try:
        while time.monotonic() < deadline:
            stored = run_query(ctx.settings, _STORED, parameters={"runs": runs}, sink_running=True).rows[0][0]
            if stored >= expected:
                break
            time.sleep(0.3)
        facts = fetch(ctx.settings, run_facts_query(run_ids=runs, tenant_id="demo"))
        (totals,) = fetch(ctx.settings, metrics_query(run_ids=runs, tenant_id="demo"))
        replays = fetch(ctx.settings, replay_delta_query())
    except QueryError as exc:
        ctx.console.print(f"[red]ClickHouse query failed:[/] {exc}")
        return
    con = ctx.console
    con.rule("[bold]the five metrics, from ClickHouse")
    con.print(f"[dim]{stored} events stored for these {len(runs)} runs (the log holds {expected}); "
              "one row of facts per run in run_facts, kept by a materialized view[/]\n")
    con.print(_runs_table(facts, names))
    waiting = [names.get(f["run_id"], f["run_id"]) for f in facts if not f["ended_as"]]
    if waiting:
        con.print(f"[dim]{', '.join(waiting)} still waits for a person: it counts as a run (and its "
                  "ApprovalRequested as a violation), not yet as a success[/]")
    con.print()
    con.print(_scorecard(totals, replays[-1] if replays else None))


def _traces(ctx: Context, timelines: dict[str, list[Event]], names: dict[str, str]) -> None:
    """Where each run's spans went: one trace per run, its id the one RunStarted records."""
    where = trace_destination()
    if not where:
        return
    con = ctx.console
    con.rule("[bold]traces")
    con.print(f"[dim]each run is one trace, exported by every service to {where}; the services started "
              "before the variable was set export nothing until they are started again[/]\n")
    table = Table(title="one trace per run", title_justify="left")
    table.add_column("run")
    table.add_column("trace id", style="cyan")
    for run_id, events in timelines.items():
        table.add_row(names.get(run_id, run_id), trace_id_of(events) or "-")
    con.print(table)
    con.print()


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def _runs_table(facts: list[dict[str, Any]], names: dict[str, str]) -> Table:
    table = Table(title="each run as the metrics count it", title_justify="left")
    for heading, justify in (("run", "left"), ("ended", "left"), ("succeeded", "center"),
                             ("violations", "right"), ("cost $", "right"), ("time to first action", "right")):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    for f in facts:
        how = f["ended_as"].removeprefix("Run").lower() + (f" ({f['outcome']})" if f["outcome"] else "")
        ended = (Text(how, style="green" if f["ended_as"] == "RunCompleted" else "red") if f["ended_as"]
                 else Text("not yet: waits for a person", style="yellow"))
        table.add_row(names.get(f["run_id"], f["run_id"]), ended,
                      Text("yes", style="green") if f["success"]
                      else Text("no", style="red") if f["ended_as"] else Text("not yet", style="yellow"),
                      Text(str(f["violations"]), style="red" if f["violations"] else ""),
                      f"{f['cost_usd']:.4f}", _ms(f["ttfa_ms"]))
    return table


def _scorecard(m: dict[str, Any], replay: dict[str, Any] | None) -> Table:
    runs, ok = m["runs"], m["successes"]
    table = Table(title=f"the five metrics of these {runs} runs", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("how it is defined", style="dim")
    per_success = m["cost_per_success_usd"]
    table.add_row("success rate", f"{ok} of {runs} · {m['success_rate']:.0%}",
                  "ends in RunCompleted with no PlanRejected, BudgetExceeded, ToolRejected, "
                  "ApprovalDenied or ApprovalExpired in it")
    table.add_row("policy violations", f"{m['violations']} · {m['violation_rate_per_100']:.0f} per 100 runs",
                  "denied or escalated actions: ToolRejected + ApprovalRequested")
    table.add_row("cost per successful run",
                  "-" if per_success is None else f"${per_success:.4f}",
                  f"cost of all the runs (${m['cost_usd']:.4f}) ÷ the successful ones ({ok})")
    table.add_row("time to first action", f"p50 {_ms(m['ttfa_p50_ms'])} · p95 {_ms(m['ttfa_p95_ms'])}",
                  "RunStarted → first ToolApproved (the guard's or a person's)")
    delta = (f"{replay['replay_delta']:+.3f} ({replay['candidate']}, {replay['day']})" if replay
             else "none scored yet")
    table.add_row("replay delta", delta,
                  "candidate's quality minus the baseline's, per candidate and day (agentlog metrics replay)")
    return table
