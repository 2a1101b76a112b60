"""`agentlog <group> <verb>`: the command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from streams.api_keys import local_key_file
from streams.cli.alerts import alerts
from streams.cli.approvals import approvals
from streams.cli.common import Context, fail, pass_ctx
from streams.cli.demo import demo
from streams.cli.health import health
from streams.cli.keys import keys
from streams.cli.memory import memory
from streams.cli.metrics import metrics
from streams.cli.plan import plan
from streams.cli.policy import policy
from streams.cli.replay import export, gate_cmd, replay, score
from streams.cli.runs import runs, submit
from streams.cli.tail import tail
from streams.cli.topics import topics
from streams.query_api import QueryError, run_query
from streams.render import rows_table
from streams.runs import LogUnavailable
from streams.settings import load_settings
from streams.supervisor import SupervisorError, alive, down, processes, status, up

__all__ = ["main"]


class _Commands(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogUnavailable as exc:
            fail(str(exc))


@click.group(cls=_Commands)
@click.pass_context
def main(click_ctx: click.Context) -> None:
    """agentlog: an event-sourced runtime for AI agents on Kafka."""
    click_ctx.obj = Context(load_settings())


@main.command("up")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Local brokers: 1, a single node; 3, a KRaft cluster (default: AGENTLOG_BROKERS, 1).")
@pass_ctx
def up_cmd(ctx: Context, brokers: int | None) -> None:
    """Start the local broker(s) (unless a bootstrap is configured), create missing topics, start every
    service."""
    if brokers is not None:
        ctx.settings = ctx.settings.model_copy(update={"brokers": brokers})
    try:
        started = up(ctx.settings, say=lambda m: ctx.console.print(f"[dim]{m}[/]"))
    except SupervisorError as exc:
        fail(str(exc))
    note = f"started {', '.join(started)}" if started else "everything was already running"
    ctx.console.print(f"[green]agentlog is up[/] ({note}) · Kafka {ctx.settings.bootstrap_servers}"
                      f" · gateway http://127.0.0.1:{ctx.settings.gateway_port}")
    secret = local_key_file(ctx.settings).read_text().strip()
    ctx.console.print(f"local API key (tenant {ctx.settings.default_tenant}): {secret}", soft_wrap=True)


@main.command("down")
@pass_ctx
def down_cmd(ctx: Context) -> None:
    """Stop every service and the local broker."""
    stopped = down(ctx.settings)
    ctx.console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status_cmd(ctx: Context, as_json: bool) -> None:
    """What runs where."""
    info = status(ctx.settings)
    if as_json:
        click.echo(json.dumps(info))
        return
    kafka: Any = info["kafka"]
    rows = []
    for b in kafka["brokers"]:
        state = ("out" if b.get("out") else "down") if not b.get("alive", True) else \
            ("up" if b["serving"] else "up, not serving")
        leads = " (controller)" if b["serving"] and b["node_id"] == kafka.get("controller") else ""
        rows.append([b.get("name", f"broker {b['node_id']}"), b.get("pid") or "-", state,
                     (b["address"] or "") + leads, "", "", ""])
    if not kafka["brokers"]:
        rows.append(["kafka", "-", "unreachable", kafka["bootstrap"], "", "", ""])
    for name, s in info["services"].items():
        state = s["state"] if s["alive"] else "down"
        age = s.get("progress_age_s")
        rows.append([name, s["pid"] or "-", state, s.get("detail") or "",
                     f"{age:.0f} s ago" if age is not None else "", "" if s.get("lag") is None else s["lag"],
                     s["restarts"] or ""])
    ctx.console.print(rows_table(["process", "pid", "state", "address / detail", "last progress", "lag",
                                  "restarts"], rows, title=f"agentlog at {info['home']}"))


@main.command("sql")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Rows as a JSON list of objects.")
@pass_ctx
def sql_cmd(ctx: Context, query: str, as_json: bool) -> None:
    """Run an analytics query (read-only) on the ClickHouse store."""
    sink = next(p for p in processes(ctx.settings) if p.name == "sink")
    try:
        result = run_query(ctx.settings, query, sink_running=alive(ctx.settings, sink))
    except QueryError as exc:
        fail(f"query failed: {exc}")
    if as_json:
        click.echo(json.dumps(result.as_dicts(), default=str))
    else:
        ctx.console.print(rows_table(result.columns, result.rows))
        ctx.console.print(f"[dim]{len(result.rows)} row(s)[/]")


main.add_command(submit)
main.add_command(runs)
main.add_command(approvals)
main.add_command(demo)
main.add_command(policy)
main.add_command(plan)
main.add_command(tail)
main.add_command(export)
main.add_command(replay)
main.add_command(score)
main.add_command(gate_cmd)
main.add_command(keys)
main.add_command(health)
main.add_command(topics)
main.add_command(metrics)
main.add_command(alerts)
main.add_command(memory)


if __name__ == "__main__":
    sys.exit(main())
