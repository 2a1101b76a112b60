"""`agentlog topics`: the topics agentlog needs, as the cluster holds them, and creating the missing ones.

The same on the local broker, the local cluster or an existing cluster (`AGENTLOG_BOOTSTRAP`):
what is shown is read from the cluster, beside what the settings want.
"""

from __future__ import annotations

import json
from typing import Any

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.cli.common import Context, fail, pass_ctx
from streams.kafka import TopicError, TopicSpec, ensure_topics, topic_specs
from streams.render import rows_table
from streams.settings import Settings

__all__ = ["describe_topics", "topics"]

# Kafka's own topics the runtime rests on: group offsets and the orchestrator's transactions.
_INTERNAL = ("__consumer_offsets", "__transaction_state")


def describe_topics(settings: Settings) -> list[dict[str, Any]]:
    """Each topic agentlog needs (and Kafka's internal ones it uses, once they exist): partitions,
    replication, in-sync replicas, min ISR, cleanup and retention, and what differs from the settings."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})
    meta = admin.list_topics(timeout=10)
    specs = {t.name: t for t in topic_specs(settings)}
    names = [*specs, *(n for n in _INTERNAL if n in meta.topics)]
    present = [n for n in names if n in meta.topics]
    configs: dict[str, dict[str, str]] = {}
    if present:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present])
        for resource, future in futures.items():
            entries = future.result(timeout=10)
            configs[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    out = []
    for name in names:
        topic = meta.topics.get(name)
        if topic is None:
            out.append({"topic": name, "exists": False, "problems": ["missing"]})
            continue
        parts = topic.partitions.values()
        replicas = min((len(p.replicas) for p in parts), default=0)
        config = configs.get(name, {})
        row: dict[str, Any] = {
            "topic": name, "exists": True, "partitions": len(parts), "replication_factor": replicas,
            # Partitions whose in-sync replicas are fewer than their replicas (a broker is down or behind).
            "under_replicated": sum(len(p.isrs) < len(p.replicas) for p in parts),
            "leaderless": sum(p.leader < 0 for p in parts),
            "min_insync_replicas": int(config.get("min.insync.replicas", "1")),
            "cleanup_policy": config.get("cleanup.policy"), "retention_ms": config.get("retention.ms"),
            "retention_bytes": config.get("retention.bytes"),
        }
        row["problems"] = _problems(settings, row, config, specs.get(name))
        out.append(row)
    return out


def _problems(settings: Settings, row: dict[str, Any], config: dict[str, str],
              spec: TopicSpec | None) -> list[str]:
    wanted_rf, wanted_isr = settings.topic_replicas, settings.topic_min_insync
    problems = []
    if row["replication_factor"] < wanted_rf:
        problems.append(f"replication factor {row['replication_factor']}, the settings want {wanted_rf}")
    if row["min_insync_replicas"] < wanted_isr:
        problems.append(f"min.insync.replicas {row['min_insync_replicas']}, the settings want {wanted_isr}")
    if spec is not None:
        if row["partitions"] != spec.partitions:
            problems.append(f"{row['partitions']} partitions, the settings want {spec.partitions}")
        for key, value in spec.config.items():
            if config.get(key) != value:
                problems.append(f"{key} {config.get(key)}, agentlog wants {value}")
    if row["leaderless"]:
        problems.append(f"{row['leaderless']} partition(s) without a leader")
    return problems


def _admin_call(what: str, call: Any) -> Any:
    try:
        return call()
    except KafkaException as exc:
        fail(f"{what}: Kafka at the bootstrap did not answer: {exc}")


@click.group("topics", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def topics(click_ctx: click.Context, as_json: bool) -> None:
    """The topics agentlog needs: partitions, replication, min ISR, retention and cleanup."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    rows = _admin_call("topics", lambda: describe_topics(ctx.settings))
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [[r["topic"], r.get("partitions", "-"), r.get("replication_factor", "-"),
              r.get("min_insync_replicas", "-"), r.get("cleanup_policy") or "-", _retention(r), _check(r)]
             for r in rows]
    ctx.console.print(rows_table(
        ["topic", "parts", "RF", "min ISR", "cleanup", "retention", "check"], table,
        title=f"topics on {ctx.settings.bootstrap_servers} (settings: RF {ctx.settings.topic_replicas}, "
              f"min ISR {ctx.settings.topic_min_insync})"))


def _check(row: dict[str, Any]) -> str:
    notes = list(row["problems"])
    if row.get("under_replicated"):
        notes.append(f"{row['under_replicated']} under-replicated")
    return "; ".join(notes) or "ok"


def _retention(row: dict[str, Any]) -> str:
    ms = row.get("retention_ms")
    if ms is None:
        return "-"
    return "for ever" if ms == "-1" else f"{int(ms) / 86_400_000:g} d"


@topics.command("create")
@pass_ctx
def create(ctx: Context) -> None:
    """Create the topics that are missing, with the settings' replication factor and min ISR."""
    try:
        created = _admin_call("topics create", lambda: ensure_topics(ctx.settings))
    except TopicError as exc:
        fail(str(exc))
    if created:
        ctx.console.print(f"created {', '.join(created)} ({ctx.settings.topic_replicas} replica(s), "
                          f"min ISR {ctx.settings.topic_min_insync})")
    else:
        ctx.console.print("every topic exists")
