"""Kafka clients configured the one way agentlog uses them, topics, and the codec wiring."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.codec import EventCodec
from schemas.events import Event
from streams.settings import Settings

__all__ = [
    "FOLDING_SERVICES",
    "ConfluentRegistry",
    "HeaderList",
    "Headers",
    "TopicError",
    "TopicSpec",
    "consumer",
    "ensure_topics",
    "header",
    "header_pairs",
    "headers_for",
    "make_codec",
    "position",
    "producer",
    "topic_specs",
    "wait_for_broker",
]


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers}


def producer(settings: Settings, **extra: Any) -> Producer:
    """An idempotent producer that partitions keys like Java clients do (murmur2).

    A write counts once every in-sync replica has it (`acks=all`, at least the topics'
    `min.insync.replicas`): losing a broker loses no acknowledged event.
    """
    return Producer({
        **_base(settings), "partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all",
        "linger.ms": 2, **extra,
    })


def _commit_done(err: KafkaError | None, _parts: list[TopicPartition]) -> None:
    # An asynchronous commit that failed costs a repeated answer after a restart, no more.
    if err is not None and err.code() != KafkaError._NO_OFFSET:
        logging.getLogger(__name__).warning("offset commit failed: %s", err)


def consumer(settings: Settings, group: str | None, *, static: bool = True, **extra: Any) -> Consumer:
    """A read_committed consumer that commits only when told to.

    Group members are static (`group.instance.id`): a restarted service takes its partitions
    back at once instead of waiting for its dead predecessor's session to time out.
    """
    config = {
        **_base(settings), "group.id": group or "agentlog-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed", "auto.offset.reset": "earliest",
        "session.timeout.ms": 45_000, "on_commit": _commit_done, **extra,
    }
    if group is not None and static:
        config["group.instance.id"] = f"{group}-{settings.instance_id}"
    return Consumer(config)


def wait_for_broker(settings: Settings, *, timeout_s: float = 60.0, node_id: int | None = None) -> None:
    """Return once the cluster answers a metadata request (a listening port is not enough).

    With `node_id`, once that local node itself answers and serves as a broker of the cluster
    (registered and caught up), not merely once some other node does.
    """
    servers = settings.bootstrap_servers
    if node_id is not None:
        servers = f"127.0.0.1:{settings.broker_ports[node_id - 1]}"
    # Quiet: connection refusals are expected while the broker starts.
    admin = AdminClient({"bootstrap.servers": servers, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            brokers = admin.list_topics(timeout=2).brokers
            if brokers and (node_id is None or node_id in brokers):
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {servers} did not answer in {timeout_s:.0f}s")
        time.sleep(0.3)


@dataclass(frozen=True)
class TopicSpec:
    """A topic agentlog needs: its name, partitions and its own config (replication comes from the
    settings, the same for every topic)."""

    name: str
    partitions: int
    config: dict[str, str]


FOLDING_SERVICES = ("orchestrator", "executor", "responder", "memory")
"""The processors that fold their runs, each with a snapshot topic of its own."""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic agentlog needs, one line each."""
    week = str(7 * 86_400_000)
    return [
        TopicSpec(settings.inbox_topic, settings.partitions, {"retention.ms": week}),
        # The event store keeps every run for ever.
        TopicSpec(settings.events_topic, settings.partitions,
                  {"retention.ms": "-1", "retention.bytes": "-1"}),
        TopicSpec(settings.deadletter_topic, 1, {"retention.ms": "-1"}),
        # Alerts and gate verdicts are few and kept: the history of what fired and what was gated.
        TopicSpec(settings.alerts_topic, 1, {"retention.ms": "-1"}),
        TopicSpec(settings.gates_topic, 1, {"retention.ms": "-1"}),
        # The memory log is the truth the memory store is rebuilt from, and the record of every
        # forget: kept for ever, never compacted.
        TopicSpec(settings.memory_topic, settings.partitions,
                  {"retention.ms": "-1", "retention.bytes": "-1"}),
        # Made here, not by Faust when the processor starts: a consumer that subscribes while its
        # topic is being made misses it until its next metadata refresh, minutes later.
        TopicSpec(settings.alert_facts_topic, settings.partitions, {"retention.ms": week}),
        # Snapshots of live runs, latest per run id: compacted, rolled often so compaction keeps
        # up with runs that end (their tombstones), co-partitioned with the events.
        *[TopicSpec(settings.snapshots_topic(s), settings.partitions, {
            "cleanup.policy": "compact", "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"})
          for s in FOLDING_SERVICES],
    ]


class TopicError(RuntimeError):
    """A topic could not be created; the message says which and why."""


def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics of `topic_specs` that are missing, replicated as the settings say;
    returns the names created."""
    # Quiet: a broker of the cluster that is down is not this call's error.
    admin = AdminClient({**_base(settings), "log_level": 0})
    existing = set(admin.list_topics(timeout=10).topics)
    todo = [NewTopic(t.name, t.partitions, settings.topic_replicas,
                     config={**t.config, "min.insync.replicas": str(settings.topic_min_insync)})
            for t in topic_specs(settings) if t.name not in existing]
    if not todo:
        return []
    created = []
    for name, future in admin.create_topics(todo, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            why = (f"cannot create {name} with {settings.topic_replicas} replica(s), "
                   f"min.insync.replicas {settings.topic_min_insync}: {exc.args[0].str()} "
                   "(AGENTLOG_REPLICATION_FACTOR and AGENTLOG_MIN_INSYNC_REPLICAS set them)")
            raise TopicError(why) from None
    return created


class ConfluentRegistry:
    """`schemas.codec.SchemaRegistry` over confluent-kafka's client (`mock://` works in-process)."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        # new_client gives the in-process mock for mock:// URLs.
        self._client = SchemaRegistryClient.new_client({"url": url})

    def register(self, subject: str, schema_str: str) -> int:
        from confluent_kafka.schema_registry import Schema

        return int(self._client.register_schema(subject, Schema(schema_str, "AVRO")))

    def schema_str(self, schema_id: int) -> str:
        return str(self._client.get_schema(schema_id).schema_str)


def make_codec(settings: Settings) -> EventCodec:
    registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
    return EventCodec(registry=registry)


HeaderList = list[tuple[str, str | bytes | None]]
"""Record headers as (name, value) pairs, as the client types them (a consumed record's values
are bytes)."""

Headers = dict[str, str | bytes | None] | HeaderList
"""Record headers in either form the client types them: pairs, or the dict a producer takes."""


def headers_for(event: Event, *, traceparent: str | None = None) -> HeaderList:
    """Headers a consumer can filter on without decoding the value, and the run's W3C trace
    context (`traceparent`), for whoever works on the record to continue the run's trace."""
    headers: HeaderList = [("event_type", event.event_type.encode()), ("tenant_id", event.tenant_id.encode())]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def header_pairs(headers: Headers | None) -> HeaderList:
    """A record's headers as (name, value) pairs, in order."""
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers or ())


def header(headers: Headers | None, name: str) -> str | None:
    for key, value in header_pairs(headers):
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None


def position(msg: Message) -> tuple[int, int]:
    """A consumed record's partition and offset. The client types both optional, as a produced
    message has neither until it is delivered; a consumed one always has them."""
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        raise ValueError(f"a record of {msg.topic()} without a partition or an offset")
    return partition, offset
