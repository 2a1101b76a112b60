"""Kafka clients configured the one way agentlog uses them, topics, and the codec wiring."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.codec import EventCodec
from schemas.events import Event
from streams.settings import Settings

__all__ = [
    "producer", "consumer", "FOLDING_SERVICES", "ensure_topics", "wait_for_broker", "make_codec", "headers_for",
    "header", "ConfluentRegistry",
]


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers}


def producer(settings: Settings, **extra: Any) -> Producer:
    """An idempotent producer that partitions keys like Java clients do (murmur2)."""
    return Producer({
        **_base(settings), "partitioner": "murmur2_random", "enable.idempotence": True,
        "linger.ms": 2, **extra,
    })


def consumer(settings: Settings, group: str | None, *, static: bool = True, **extra: Any) -> Consumer:
    """A read_committed consumer that commits only when told to.

    Group members are static (`group.instance.id`): a restarted service takes its partitions
    back at once instead of waiting for its dead predecessor's session to time out.
    """
    config = {
        **_base(settings), "group.id": group or "agentlog-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed", "auto.offset.reset": "earliest",
        "session.timeout.ms": 15_000, **extra,
    }
    if group is not None and static:
        config["group.instance.id"] = f"{group}-{settings.instance_id}"
    return Consumer(config)


def wait_for_broker(settings: Settings, *, timeout_s: float = 60.0) -> None:
    """Return once the cluster answers a metadata request (a listening port is not enough)."""
    # Quiet: connection refusals are expected while the broker starts.
    admin = AdminClient({**_base(settings), "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {settings.bootstrap_servers} did not answer in {timeout_s:.0f}s")
        time.sleep(0.3)


FOLDING_SERVICES = ("orchestrator", "executor", "responder")
"""The processors that fold their runs, each with a snapshot topic of its own."""


def ensure_topics(settings: Settings) -> None:
    """Create the inbox, events and dead-letter topics if missing."""
    admin = AdminClient(_base(settings))
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(settings.inbox_topic, settings.partitions, 1,
                 config={"retention.ms": str(7 * 86_400_000)}),
        # The event store keeps every run for ever.
        NewTopic(settings.events_topic, settings.partitions, 1,
                 config={"retention.ms": "-1", "retention.bytes": "-1"}),
        NewTopic(settings.deadletter_topic, 1, 1, config={"retention.ms": "-1"}),
        # Snapshots of live runs, latest per run id: compacted, rolled often so compaction keeps
        # up with runs that end (their tombstones), co-partitioned with the events.
        *[NewTopic(settings.snapshots_topic(s), settings.partitions, 1, config={
            "cleanup.policy": "compact", "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"})
          for s in FOLDING_SERVICES],
    ]
    todo = [t for t in wanted if t.topic not in existing]
    if not todo:
        return
    for future in admin.create_topics(todo, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


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


def headers_for(event: Event) -> list[tuple[str, bytes]]:
    """Headers a consumer can filter on without decoding the value."""
    return [("event_type", event.event_type.encode()), ("tenant_id", event.tenant_id.encode())]


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode() if value is not None else None
    return None
