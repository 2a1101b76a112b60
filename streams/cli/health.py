"""`agentlog health SERVICE`: is one service healthy, for a liveness or readiness probe."""

from __future__ import annotations

import json
import os
import time
from functools import partial

import click

from streams.cli.common import Context, pass_ctx
from streams.health import judge, read_health
from streams.kafka import wait_for_broker
from streams.service import ready_file

__all__ = ["health"]


def _running(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kafka_answers(ctx: Context) -> bool:
    try:
        wait_for_broker(ctx.settings, timeout_s=3)
        return True
    except TimeoutError:
        return False


@click.command("health")
@click.argument("service")
@click.option("--ready", is_flag=True, help="Also require it to be ready (restored, serving).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@pass_ctx
def health(ctx: Context, service: str, ready: bool, as_json: bool) -> None:
    """Exit 0 when SERVICE is working, idle or waiting for a cluster that is away; 1 when it is
    down or stalled (its main loop silent, or no progress while the cluster answers)."""
    doc = read_health(ctx.settings, service)
    pid = doc.get("pid") if doc else None
    judged = partial(judge, doc, alive=_running(pid), pid=pid if isinstance(pid, int) else None,
                     now=time.time(), stall_s=ctx.settings.stall_s)
    verdict = judged(kafka_answers=False)
    if verdict.state == "waiting" and (verdict.progress_age_s or 0) > ctx.settings.stall_s:
        # Waiting that long for Kafka is healthy only while Kafka itself does not answer.
        verdict = judged(kafka_answers=_kafka_answers(ctx))
    healthy = verdict.state in ("working", "idle", "waiting")
    if ready and not ready_file(ctx.settings, service).exists():
        healthy, verdict = False, verdict.__class__("starting", "not ready yet")
    if as_json:
        click.echo(json.dumps({"service": service, "healthy": healthy, **vars(verdict)}))
    else:
        click.echo(f"{service}: {verdict.state}{f' ({verdict.detail})' if verdict.detail else ''}")
    raise SystemExit(0 if healthy else 1)
