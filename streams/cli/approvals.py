"""`agentlog approvals list | approve | reject`: people decide on parked tool calls."""

from __future__ import annotations

import getpass
import json

import click

from processors.state import Status, fold
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError, run_query
from streams.render import rows_table, timeline_table
from streams.runs import decide_approval, read_run, wait_for_run
from streams.supervisor import alive, processes

__all__ = ["approvals", "PENDING_SQL"]

PENDING_SQL = """
SELECT run_id, tenant_id, argMax(payload, seq) AS request, max(event_time) AS since
FROM agent_events
GROUP BY run_id, tenant_id
HAVING argMax(event_type, seq) = 'ApprovalRequested'
ORDER BY since
"""


@click.group("approvals")
def approvals() -> None:
    """Tool calls waiting for a person."""


@approvals.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Calls parked by the policy guard, oldest first."""
    sink = next(p for p in processes(ctx.settings) if p.name == "sink")
    try:
        result = run_query(ctx.settings, PENDING_SQL, sink_running=alive(ctx.settings, sink))
    except QueryError as exc:
        fail(str(exc))
    items = []
    for row in result.as_dicts():
        req = json.loads(row["request"])
        items.append({"run_id": row["run_id"], "tenant_id": row["tenant_id"], "step_id": req["step_id"],
                      "tool": req["tool"], "input": json.loads(req["input_json"]), "rule": req["rule"],
                      "reason": req["reason"], "since": row["since"], "expires_at": req["expires_at"]})
    if as_json:
        click.echo(json.dumps(items, default=str))
        return
    rows = [[i["run_id"], i["tenant_id"], i["step_id"], i["tool"], json.dumps(i["input"])[:70], i["rule"]]
            for i in items]
    ctx.console.print(rows_table(["run", "tenant", "step", "tool", "input", "rule"], rows,
                                 title="waiting for approval"))


def _decide(ctx: Context, run_id: str, *, approve: bool, approver: str | None, reason: str,
            wait: bool) -> None:
    state = fold(read_run(ctx.settings, ctx.codec, run_id))
    if state is None:
        fail(f"no run {run_id}")
    if state.status != Status.AWAITING_APPROVAL:
        fail(f"run {run_id} is not waiting for an approval (it is {state.status})")
    who = approver or getpass.getuser()
    decide_approval(ctx.settings, ctx.producer, ctx.codec, state, approve=approve, approver=who,
                    reason=reason)
    verb = "approved" if approve else "rejected"
    ctx.console.print(f"{verb} {state.parked.step_id if state.parked else ''} of run {run_id} as {who}")
    if wait:
        events = wait_for_run(ctx.settings, ctx.codec, run_id, timeout_s=60, after_seq=state.seq)
        ctx.console.print(timeline_table(run_id, events))


for _verb, _approve in (("approve", True), ("reject", False)):
    @approvals.command(_verb, help=f"{_verb.capitalize()} the call a run waits on.")
    @click.argument("run_id")
    @click.option("--approver", help="Your identity (default: the login name).")
    @click.option("--reason", default="", help="Why, for the audit trail.")
    @click.option("--wait", is_flag=True, help="Show the timeline once the run moved on.")
    @pass_ctx
    def _cmd(ctx: Context, run_id: str, approver: str | None, reason: str, wait: bool,
             _approve: bool = _approve) -> None:
        _decide(ctx, run_id, approve=_approve, approver=approver, reason=reason, wait=wait)
