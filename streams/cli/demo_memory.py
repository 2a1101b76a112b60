"""The demo's memory scene: one run of an opted-in tenant leaves a fact, redacted; a later run is
given it before it plans, and answers from it."""

from __future__ import annotations

from rich.panel import Panel

from processors.memory.records import DEFAULT_TTL_S
from schemas.events import Event, MemoryRetrieved, MemoryStored, PlanGenerated, ResponseFinalized
from streams.cli.common import Context
from streams.memory_ops import memory_ops
from streams.runs import request_run, wait_for_run

__all__ = ["show_memory", "MEMORY_TENANT", "REMEMBER", "ASK"]

MEMORY_TENANT = "demo-memory"
"""A tenant of its own: the five sample runs of tenant `demo` keep no memory, as before."""
REMEMBER = "Remember that our project code is ORION-7 and the on-call phone is +49 30 901820."
ASK = "What is our project code?"


def _payload(events: list[Event], kind: type) -> object | None:
    return next((e.payload for e in events if isinstance(e.payload, kind)), None)


def show_memory(ctx: Context, *, stamp: str) -> None:
    """Opt the memory tenant in, run REMEMBER then ASK, and show what was stored and given."""
    con, settings = ctx.console, ctx.settings
    con.rule("[bold]memory: a fact one run leaves, a later run uses")
    try:
        with memory_ops(settings, actor="demo") as ops:
            ops.opt_in(MEMORY_TENANT, ttl_s=DEFAULT_TTL_S)
    except (RuntimeError, OSError) as exc:
        con.print(f"[red]the memory service did not answer:[/] {exc}\n")
        return
    con.print(f"[dim]tenant {MEMORY_TENANT} opted in to long-term memory (off for every tenant until it "
              "does); what is stored is redacted first and expires in 30 days[/]\n")
    runs = []
    for n, text in enumerate((REMEMBER, ASK), 1):
        run_id = request_run(settings, ctx.producer, ctx.codec, text=text, tenant_id=MEMORY_TENANT,
                             route="demo", idempotency_key=f"demo-{stamp}-memory-{n}", requested_by="demo",
                             memory=True)
        runs.append(wait_for_run(settings, ctx.codec, run_id, timeout_s=60))
    first, second = runs
    con.print(f"1. [bold]“{REMEMBER}”[/] [dim]({first[0].run_id if first else '?'})[/]")
    stored = _payload(first, MemoryStored)
    if isinstance(stored, MemoryStored):
        for m in stored.memories:
            if not m.text.startswith("Asked: "):  # the exchange is kept too; the fact is the point here
                con.print(f"   MemoryStored, before RunCompleted: [green]{m.text}[/]")
    con.print(f"2. [bold]“{ASK}”[/] [dim]({second[0].run_id if second else '?'})[/]")
    found = _payload(second, MemoryRetrieved)
    if isinstance(found, MemoryRetrieved):
        facts = [m for m in found.memories if not m.text.startswith("Asked: ")]
        for given in facts[:2]:
            con.print(f"   MemoryRetrieved, before planning: [cyan]{given.text.splitlines()[0]}[/] "
                      f"[dim](score {given.score:.2f})[/]")
    plan = _payload(second, PlanGenerated)
    if isinstance(plan, PlanGenerated) and plan.steps:
        con.print(f"   PlanGenerated: [dim]{plan.steps[0].objective}[/]")
    final = _payload(second, ResponseFinalized)
    if isinstance(final, ResponseFinalized):
        # The docs found are the five runs' business above; here, the answer's head and its memory.
        lines = final.text.splitlines()
        remembered = [line for line in lines if line.startswith("From memory")]
        kept = lines[:1] + ["…"] * (len(lines) > 1 + len(remembered)) + remembered
        con.print(Panel("\n".join(kept), title="answer (docs passages left out)", title_align="left",
                        expand=False))
    con.print(f"[dim]what it keeps: .venv/bin/agentlog memory list --tenant {MEMORY_TENANT} · forget it "
              f"(on record in the memory log): .venv/bin/agentlog memory forget --tenant {MEMORY_TENANT} "
              "--all[/]\n")
