"""How timelines and query results look in a terminal."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from processors.state import fold
from schemas.events import Event

__all__ = ["timeline_table", "event_summary", "rows_table", "STATUS_STYLE"]

STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "red",
                "awaiting_approval": "yellow", "running": "cyan", "unknown": "dim"}

_TYPE_STYLE = {"ToolRejected": "bold red", "PlanRejected": "bold red", "RunFailed": "bold red",
               "BudgetExceeded": "bold red", "ApprovalRequested": "bold yellow",
               "StepTimedOut": "yellow", "RunTimedOut": "bold red", "RequestRetried": "yellow",
               "ToolApproved": "green", "RunCompleted": "bold green", "ResponseFinalized": "bold"}


def _short(value: str, n: int = 90) -> str:
    value = " ".join(value.split())
    return value if len(value) <= n else value[: n - 1] + "…"


def _call(tool: str, input_json: str) -> str:
    try:
        args = json.loads(input_json)
    except ValueError:
        return f"{tool}({input_json})"
    return f"{tool}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) + ")"


def event_summary(e: Event) -> str:
    """One line a person reads to know what happened."""
    p: Any = e.payload
    t = e.event_type
    if t in ("RunStarted", "RunRequested"):
        return f"“{_short(p.text)}” (route {p.route})"
    if t == "PlanGenerated":
        tools = " → ".join(s.tool for s in p.steps)
        return f"{len(p.steps)} step(s): {tools}  [{p.model_call.model}]"
    if t == "PlanRejected":
        return _short("; ".join(p.errors))
    if t == "ToolProposed":
        return _short(f"{p.step_id}: {_call(p.tool, p.input_json)}")
    if t in ("ToolApproved", "ToolRejected"):
        who = getattr(p, "approved_by", None) or getattr(p, "rejected_by", None)
        rule = f"rule {p.rule}" if p.rule else "no rule"
        return _short(f"{p.step_id} {p.tool}: {rule}" + (f", by {who}" if who else "") + f" — {p.reason}")
    if t == "ApprovalRequested":
        return _short(f"{p.step_id} {p.tool} waits for a person (rule {p.rule}), "
                      f"expires {p.expires_at:%Y-%m-%d %H:%M} UTC")
    if t in ("ApprovalGranted", "ApprovalDenied"):
        return _short(f"{p.step_id} by {p.approver}" + (f": {p.reason}" if p.reason else ""))
    if t == "ToolExecuted":
        failed = f" — {_short(p.error, 60)}" if p.error else ""
        return f"{p.step_id} {p.tool}: {p.status} in {p.duration_ms} ms{failed}"
    if t == "ObservationCaptured":
        return _short(f"{p.step_id} [{p.status}] {p.summary}")
    if t == "ResponseRequested":
        return f"{len(p.observations)} observation(s) to answer from"
    if t in ("ResponseDrafted", "ResponseFinalized"):
        return _short(p.text.replace("\n", " / "), 110)
    if t == "RunCompleted":
        return f"{p.outcome} · {p.tool_calls} tool call(s) · ${p.cost_usd:.4f} · {p.duration_ms} ms"
    if t in ("RunFailed", "RunCancelled", "BudgetExceeded"):
        return _short(p.reason)
    if t == "StepTimedOut":
        return f"{p.request_type} attempt {p.attempt}: no answer in {p.timeout_s:g} s"
    if t == "RequestRetried":
        return f"{p.request_type} asked again: attempt {p.attempt}, {p.timeout_s:g} s to answer"
    if t == "RunTimedOut":
        return f"worked {p.active_s:.1f} s, past its {p.limit_s:g} s limit"
    if t in ("MemoryRetrieved", "MemoryStored"):
        done = "retrieved" if t == "MemoryRetrieved" else "stored"
        texts = "".join(f" | {m.text}" for m in p.memories)
        why = f" — {p.reason}" if p.reason else ""
        return _short(f"{len(p.memories)} memory(ies) {done} [{p.status}]{why}{texts}")
    return _short(e.payload.model_dump_json())


def timeline_table(run_id: str, events: list[Event], *, title: str | None = None) -> Table:
    state = fold(events)
    status = state.status if state else "unknown"
    heading = Text(title or f"run {run_id}")
    heading.append(f"  {status}", style=STATUS_STYLE.get(status, ""))
    table = Table(title=heading, title_justify="left", expand=False, show_lines=False)
    table.add_column("seq", justify="right", style="dim")
    table.add_column("+ms", justify="right", style="dim")
    table.add_column("actor", style="cyan")
    table.add_column("event")
    table.add_column("what happened", overflow="fold")
    start = events[0].event_time if events else None
    for e in events:
        ms = int((e.event_time - start).total_seconds() * 1000) if start else 0
        table.add_row(str(e.seq), str(ms), e.actor,
                      Text(e.event_type, style=_TYPE_STYLE.get(e.event_type, "")), event_summary(e))
    return table


def rows_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*[("" if v is None else str(v)) for v in row])
    return table
