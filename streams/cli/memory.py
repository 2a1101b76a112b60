"""`agentlog memory …`: long-term memory of a tenant (opt in or out, import, search, list, forget,
rebuild from the memory log) and the PII redactor on its own (`memory redact`).

Memories live in ClickHouse (`AGENTLOG_CLICKHOUSE_URL`) or in chDB under `<home>/memory`, a path
of its own (the events' path belongs to the sink); while the memory service runs, it owns that
path and these commands ask it (`streams/memory_ops.py`).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from processors.memory.records import DEFAULT_TTL_S
from streams.cli.common import Context, fail, pass_ctx
from streams.memory_ops import MemoryOps, MemoryRefused, memory_ops
from streams.render import rows_table
from streams.settings import Settings

__all__ = ["memory", "parse_duration"]

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> int:
    """Whole seconds, or `30s`, `15m`, `12h`, `30d`, `2w`."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 3600, 12h, 30d)")
    return int(match.group(1)) * _UNIT[match.group(2)]


def _actor() -> str:
    """Who changes the memory from this shell, as the memory log records it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for the uid (a container's)
        return f"cli:uid {os.getuid()}"


@contextmanager
def _ops(settings: Settings, *, sweep: bool = False) -> Iterator[MemoryOps]:
    """The memory operations; a refusal or a store that cannot be opened is an error, exit 1.
    Every command that writes sweeps expired memories first (the service sweeps on its own)."""
    try:
        with memory_ops(settings, sweep=sweep, actor=_actor()) as ops:
            yield ops
    except MemoryRefused as exc:
        fail(str(exc))
    except RuntimeError as exc:  # chDB names the lock it could not take; the service its answer
        fail(f"the memory store cannot be used: {exc}")


def _lines(stream: IO[str]) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"line {number}: not JSON ({exc.msg})")


@click.group("memory")
def memory() -> None:
    """Long-term memory: off for a tenant until it opts in; PII redacted before anything is stored."""


@memory.command("opt-in")
@click.option("--tenant", required=True)
@click.option("--ttl", "ttl", default=str(DEFAULT_TTL_S), show_default=True,
              help="Lifetime of a memory that names none (seconds, or 12h, 30d, 2w).")
@pass_ctx
def opt_in(ctx: Context, tenant: str, ttl: str) -> None:
    """Turn long-term memory on for a tenant."""
    seconds = parse_duration(ttl)
    with _ops(ctx.settings, sweep=True) as ops:
        ops.opt_in(tenant, ttl_s=seconds)
    ctx.console.print(f"tenant {tenant} keeps memories (default lifetime {seconds} s)")


@memory.command("opt-out")
@click.option("--tenant", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def opt_out(ctx: Context, tenant: str, as_json: bool) -> None:
    """Turn long-term memory off for a tenant and forget everything it kept."""
    with _ops(ctx.settings, sweep=True) as ops:
        done = ops.opt_out(tenant)
    if as_json:
        click.echo(json.dumps(done))
    else:
        ctx.console.print(f"tenant {tenant} keeps no memories; {len(done['forgotten'])} forgotten")


@memory.command("import")
@click.option("--tenant", required=True)
@click.argument("file", type=click.File("r"))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def import_cmd(ctx: Context, tenant: str, file: IO[str], as_json: bool) -> None:
    """Store the memories of a JSONL file (`{"id"?, "text", "subject"?, "created_at"?, "ttl_s"?,
    "metadata"?}` a line), redacted. Nothing is stored unless every line is valid."""
    lines = [line for _, line in _lines(file)]
    with _ops(ctx.settings, sweep=True) as ops:
        done = ops.import_lines(tenant, lines)
    if as_json:
        click.echo(json.dumps(done))
    else:
        ctx.console.print(f"stored {done['stored']} memories for tenant {tenant}"
                          + (f" ({done['expired']} already expired, left out)" if done["expired"] else ""))


@memory.command("search")
@click.option("--tenant", required=True)
@click.option("--subject", default=None, help="Only memories about this subject.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--queries", type=click.File("r"), default=None,
              help='JSONL of {"id", "query"}: one line of results printed per query.')
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("query", required=False)
@pass_ctx
def search(ctx: Context, tenant: str, subject: str | None, k: int, queries: IO[str] | None, as_json: bool,
           query: str | None) -> None:
    """The memories of a tenant that answer QUERY best (expired ones never)."""
    if (query is None) == (queries is None):
        fail("give a QUERY or --queries FILE, one of them")
    with _ops(ctx.settings) as ops:
        if queries is not None:
            for number, line in _lines(queries):
                if not isinstance(line, dict) or "id" not in line or not isinstance(line.get("query"), str):
                    fail(f"line {number}: expected {{\"id\", \"query\"}}")
                found = ops.search(tenant, line["query"], k=k, subject=subject)
                click.echo(json.dumps({"id": line["id"], "results": found}))
            return
        assert query is not None
        found = ops.search(tenant, query, k=k, subject=subject)
    if as_json:
        click.echo(json.dumps({"query": query, "results": found}))
        return
    ctx.console.print(rows_table(["id", "score", "expires", "text"],
                                 [[f["id"], f"{f['score']:.4f}", f["expires_at"][:19], f["text"]]
                                  for f in found]))


@memory.command("list")
@click.option("--tenant", default=None, help="Its memories; without it, the tenants that opted in.")
@click.option("--subject", default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, tenant: str | None, subject: str | None, limit: int, as_json: bool) -> None:
    """A tenant's live memories, newest first; without --tenant, every tenant that opted in."""
    with _ops(ctx.settings) as ops:
        rows = ops.tenants() if tenant is None else ops.memories(tenant, subject=subject, limit=limit)
    if as_json:
        click.echo(json.dumps(rows))
    elif tenant is None:
        ctx.console.print(rows_table(["tenant", "default lifetime (s)", "live memories"],
                                     [[r["tenant"], r["default_ttl_s"], r["memories"]] for r in rows]))
    else:
        ctx.console.print(rows_table(["id", "subject", "expires", "text"],
                                     [[r["id"], r["subject"], r["expires_at"][:19], r["text"]]
                                      for r in rows]))
        ctx.console.print(f"[dim]{len(rows)} memory(ies)[/]")


@memory.command("forget")
@click.option("--tenant", required=True)
@click.option("--id", "memory_id", default=None)
@click.option("--subject", default=None)
@click.option("--all", "everything", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def forget(ctx: Context, tenant: str, memory_id: str | None, subject: str | None, everything: bool,
           as_json: bool) -> None:
    """Delete one memory (--id), a subject's (--subject) or all of a tenant's (--all); exit 1 when
    --id names no memory of the tenant."""
    if sum([memory_id is not None, subject is not None, everything]) != 1:
        fail("give exactly one of --id, --subject, --all")
    with _ops(ctx.settings, sweep=True) as ops:
        done = ops.forget(tenant, memory_id=memory_id, subject=subject, everything=everything)
    if as_json:
        click.echo(json.dumps(done))
    else:
        ctx.console.print(f"forgot {len(done['forgotten'])} memory(ies) of tenant {tenant}")
    if memory_id is not None and not done["forgotten"]:
        raise SystemExit(1)


@memory.command("rebuild")
@click.option("--tenant", default=None, help="Only this tenant's memories; without it, every tenant's.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def rebuild(ctx: Context, tenant: str | None, as_json: bool) -> None:
    """Rebuild the store from the memory log: what was stored and not forgotten, and has not
    expired; the tenant's opt-in as the log last says."""
    with _ops(ctx.settings) as ops:
        done = ops.rebuild(tenant)
    if as_json:
        click.echo(json.dumps(done))
        return
    for t in done["tenants"]:
        ctx.console.print(f"tenant {t['tenant']}: " + (f"{t['memories']} memories" if t["opted_in"]
                                                        else "not opted in, no memories"))
    if not done["tenants"]:
        ctx.console.print("the memory log has no changes" + (f" of tenant {tenant}" if tenant else ""))


@memory.command("redact")
@click.argument("file", type=click.File("r"), default="-")
@pass_ctx
def redact(ctx: Context, file: IO[str]) -> None:
    """JSONL `{"text"}` in (FILE or -), one line out per line in: `{"text": redacted, "entities":
    [{"type", "start", "end"}]}` (Presidio's types, offsets into the text given)."""
    from processors.memory.redaction import redactor

    engine = redactor()
    for number, line in _lines(file):
        if not isinstance(line, dict) or not isinstance(line.get("text"), str):
            fail(f"line {number}: expected {{\"text\": …}}")
        done = engine.redact(line["text"])
        click.echo(json.dumps({"text": done.text, "entities": [
            {"type": e.type, "start": e.start, "end": e.end} for e in done.entities]}, ensure_ascii=False))
        sys.stdout.flush()
