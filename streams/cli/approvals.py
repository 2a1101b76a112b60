"""`agentlog approvals list | approve | reject`: people decide on parked tool calls."""

from __future__ import annotations

import getpass
import json

import click

from streams.approvals import NotWaiting, decide, pending_approvals
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError
from streams.render import rows_table, timeline_table
from streams.runs import NoSuchRun, wait_for_run

__all__ = ["approvals"]


@click.group("approvals")
def approvals() -> None:
    """Tool calls waiting for a person."""


@approvals.command("list")
@click.option("--tenant", help="Only this tenant's calls.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, tenant: str | None, as_json: bool) -> None:
    """Calls parked by the policy guard, oldest first."""
    try:
        items = pending_approvals(ctx.settings, tenant_id=tenant)
    except QueryError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(items, default=str))
        return
    rows = [[i["run_id"], i["tenant_id"], i["step_id"], i["tool"], json.dumps(i["input"])[:70], i["rule"],
             i["expires_at"]] for i in items]
    ctx.console.print(rows_table(["run", "tenant", "step", "tool", "input", "rule", "expires"], rows,
                                 title="waiting for approval"))


def _decide(ctx: Context, run_id: str, *, approve: bool, approver: str | None, reason: str,
            wait: bool) -> None:
    who = approver or getpass.getuser()
    try:
        state = decide(ctx.settings, ctx.producer, ctx.codec, run_id, approve=approve, approver=who,
                       reason=reason)
    except (NoSuchRun, NotWaiting) as exc:
        fail(str(exc))
    verb = "approved" if approve else "rejected"
    ctx.console.print(f"{verb} {state.parked.step_id if state.parked else ''} of run {run_id} as {who}")
    if wait:
        events = wait_for_run(ctx.settings, ctx.codec, run_id, timeout_s=60, after_seq=state.seq)
        ctx.console.print(timeline_table(run_id, events))


@approvals.command("approve")
@click.argument("run_id")
@click.option("--approver", help="Your identity (default: the login name).")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--wait", is_flag=True, help="Show the timeline once the run moved on.")
@pass_ctx
def approve_cmd(ctx: Context, run_id: str, approver: str | None, reason: str, wait: bool) -> None:
    """Approve the call RUN_ID waits on."""
    _decide(ctx, run_id, approve=True, approver=approver, reason=reason, wait=wait)


@approvals.command("reject")
@click.argument("run_id")
@click.option("--approver", help="Your identity (default: the login name).")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--wait", is_flag=True, help="Show the timeline once the run moved on.")
@pass_ctx
def reject_cmd(ctx: Context, run_id: str, approver: str | None, reason: str, wait: bool) -> None:
    """Reject the call RUN_ID waits on."""
    _decide(ctx, run_id, approve=False, approver=approver, reason=reason, wait=wait)
