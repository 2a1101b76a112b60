"""`agentlog tail`: follow the log as a consumer service would."""

from __future__ import annotations

import getpass
import json

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from processors.replay.dataset import event_doc
from streams.cli.common import Context, pass_ctx
from streams.edge import Intake, Poison, next_batch
from streams.kafka import consumer, header
from streams.render import event_summary

__all__ = ["tail"]


@click.command("tail")
@click.option("--type", "types", multiple=True,
              help="Only these event types (repeatable), e.g. RunCompleted.")
@click.option("--tenant", help="Only this tenant's events.")
@click.option("--group",
              help="Consumer group (default: agentlog-tail-<login>); a group resumes where it left.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event instead of new ones.")
@click.option("--max", "limit", type=int, help="Stop after this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def tail(ctx: Context, types: tuple[str, ...], tenant: str | None, group: str | None,
         from_beginning: bool, limit: int | None, as_json: bool) -> None:
    """Follow agentlog.events; filters use the headers, so skipped events are never decoded."""
    settings = ctx.settings
    wanted = set(types)

    def start(c: Consumer, parts: list[TopicPartition]) -> None:
        if from_beginning:
            for tp in parts:
                tp.offset = OFFSET_BEGINNING
            c.assign(parts)

    # Not a static member: several tails may share a group and split the partitions.
    source = consumer(settings, group or f"agentlog-tail-{getpass.getuser()}", static=False,
                      **{"enable.auto.commit": True, "auto.offset.reset": "latest"})
    source.subscribe([settings.events_topic], on_assign=start)
    intake = Intake(settings, ctx.codec, service="tail", dead_letters=None)
    seen = 0
    try:
        while limit is None or seen < limit:
            for msg in next_batch(source, max_messages=500, timeout_s=0.5):
                if intake.consume_error(msg):
                    continue
                if wanted and header(msg.headers(), "event_type") not in wanted:
                    continue
                if tenant and header(msg.headers(), "tenant_id") != tenant:
                    continue
                try:
                    event = intake.decode(msg)
                except Poison as exc:
                    click.echo(f"unreadable record at {msg.partition()}@{msg.offset()}: {exc}", err=True)
                    continue
                if as_json:
                    click.echo(json.dumps({"run_id": event.run_id, "tenant_id": event.tenant_id,
                                           **event_doc(event)}))
                else:
                    ctx.console.print(f"[dim]{event.event_time:%H:%M:%S.%f}"[:-3] + "[/] "
                                      f"{event.run_id[:8]} {event.seq:>3} [bold]{event.event_type}[/] "
                                      f"{event_summary(event)}", soft_wrap=True)
                seen += 1
                if limit is not None and seen >= limit:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
