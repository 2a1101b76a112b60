"""`agentlog submit` and `agentlog runs …`."""

from __future__ import annotations

import getpass
import json

import click

from processors.replay.dataset import event_doc
from processors.spans import trace_id_of
from processors.state import fold
from streams.cli.common import Context, fail, pass_ctx
from streams.render import timeline_table
from streams.runs import AlreadyEnded, NoSuchRun, cancel_run, read_run, request_run, run_status, wait_for_run

__all__ = ["submit", "runs"]


@click.command("submit")
@click.argument("text")
@click.option("--tenant", help="Tenant of the run (default: the configured default tenant).")
@click.option("--route", default="default", show_default=True, help="Route, for metrics and policy.")
@click.option("--idempotency-key", help="The same key twice is one run.")
@click.option("--wait", is_flag=True, help="Return when the run ended or waits for a person.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds --wait waits.")
@click.option("--json", "as_json", is_flag=True, help="Print {run_id, status}.")
@click.option("--memory/--no-memory", default=None,
              help="Use the tenant's long-term memory, or not (default: when the tenant opted in).")
@click.option("--subject", default=None,
              help="Whom or what the run is about: memories are retrieved for it only, and kept under it.")
@pass_ctx
def submit(ctx: Context, text: str, tenant: str | None, route: str, idempotency_key: str | None,
           wait: bool, timeout: float, as_json: bool, memory: bool | None, subject: str | None) -> None:
    """Ask the agent to do TEXT."""
    if not text.strip():
        fail("TEXT is empty")
    run_id = request_run(ctx.settings, ctx.producer, ctx.codec, text=text,
                         tenant_id=tenant or ctx.settings.default_tenant, route=route,
                         idempotency_key=idempotency_key, memory=memory, memory_subject=subject or None)
    status = "submitted"
    events = []
    if wait:
        events = wait_for_run(ctx.settings, ctx.codec, run_id, timeout_s=timeout)
        status = run_status(events)
        if status == "running":
            status = "timeout"
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "status": status}))
        return
    if events:
        ctx.console.print(timeline_table(run_id, events))
    else:
        ctx.console.print(f"run [bold]{run_id}[/] {status}")
    if status == "timeout":
        raise SystemExit(2)


@click.group("runs")
def runs() -> None:
    """Read runs."""


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="The timeline as JSON.")
@pass_ctx
def show(ctx: Context, run_id: str, as_json: bool) -> None:
    """A run's timeline, from the log."""
    events = read_run(ctx.settings, ctx.codec, run_id)
    if not events:
        fail(f"no run {run_id} on {ctx.settings.events_topic}")
    state = fold(events)
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "status": state.status if state else "unknown",
                               "tenant_id": events[0].tenant_id, "answer": state.answer if state else None,
                               "trace_id": trace_id_of(events), "events": [event_doc(e) for e in events]}))
        return
    ctx.console.print(timeline_table(run_id, events))
    if (trace := trace_id_of(events)) is not None:
        ctx.console.print(f"[dim]trace[/] {trace}")
    if state and state.answer:
        ctx.console.print(f"\n[bold]answer[/]\n{state.answer}")


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled by a user", show_default=True, help="Recorded in RunCancelled.")
@click.option("--by", "requested_by", help="Who cancels (default: the login name).")
@pass_ctx
def cancel(ctx: Context, run_id: str, reason: str, requested_by: str | None) -> None:
    """Cancel a run: nothing more runs for it, and late results are ignored."""
    try:
        state = cancel_run(ctx.settings, ctx.producer, ctx.codec, run_id, reason=reason,
                           requested_by=requested_by or getpass.getuser())
    except (NoSuchRun, AlreadyEnded) as exc:
        fail(str(exc))
    ctx.console.print(f"cancel requested for run {run_id} (was {state.status})")
