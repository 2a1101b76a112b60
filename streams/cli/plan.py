"""`agentlog plan …`: the plan contract from the shell."""

from __future__ import annotations

import json
from typing import Any, TextIO

import click

from processors.plan import validate_plan
from streams.settings import load_settings
from streams.tools_config import tool_registry

__all__ = ["plan"]


@click.group("plan")
def plan() -> None:
    """Validate plans against the contract."""


@plan.command("validate")
@click.argument("source", metavar="[FILE|-]", default="-", type=click.File("r", encoding="utf-8"))
@click.option("--jsonl", is_flag=True,
              help="One plan per line; prints one result per non-blank line, with its line number.")
@click.option("--run-id", help="Also require each plan's runId to be this run id.")
def validate(source: TextIO, jsonl: bool, run_id: str | None) -> None:
    """Check plans (JSON, from FILE or stdin) against the contract and the installation's tools.

    Prints {"valid": bool, "errors": [...]} per plan; exits 0 when every plan is valid, 1
    otherwise. Input that is not JSON is an invalid plan, not a crash.
    """
    registry = tool_registry(load_settings())
    results: list[dict[str, Any]] = []
    if jsonl:
        for n, line in enumerate(source, 1):
            if line.strip():  # blank lines separate nothing and are no plans
                checked = validate_plan(line, registry=registry, run_id=run_id)
                results.append({"valid": checked.valid, "errors": checked.errors, "line": n})
    else:
        checked = validate_plan(source.read(), registry=registry, run_id=run_id)
        results.append({"valid": checked.valid, "errors": checked.errors})
    for result in results:
        click.echo(json.dumps(result, ensure_ascii=False))
    if not results:
        raise click.UsageError("no plans in the input")
    if not all(r["valid"] for r in results):
        raise SystemExit(1)
