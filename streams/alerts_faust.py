"""What the alerting processor needs of Faust beyond its defaults, kept in one place.

* A transport whose consumers read committed records only. Faust reads `read_committed` only
  under its (experimental) exactly-once guarantee; the events topic is written in transactions,
  so an at-least-once Faust consumer would otherwise count the events of an aborted one.
* `FaustRecord`: a consumed Faust message seen as the confluent-kafka `Message` the edge's
  `Intake` decodes and dead-letters, so a NULL or undecodable record takes the same path here as
  in every other consumer.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import Message

__all__ = ["SCHEME", "CommittedTransport", "FaustRecord", "broker_urls"]

SCHEME = "agentlog"
"""The broker URL scheme that selects `CommittedTransport`."""


class _CommittedThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands its isolation level to the fetcher when the consumer starts, which is
        # after this: set here, it applies to every fetch.
        consumer._isolation_level = "read_committed"
        return consumer


class _CommittedConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _CommittedThread(self, loop=self.loop, beacon=self.beacon)


class CommittedTransport(Transport):
    """aiokafka's transport, its consumers reading committed records only."""

    Consumer = _CommittedConsumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:CommittedTransport"


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs for a bootstrap list, on the committed-only transport."""
    return [f"{SCHEME}://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()]


class FaustRecord:
    """A Faust message with the accessors of a confluent-kafka `Message`."""

    def __init__(self, message: Message) -> None:
        self._message = message

    def value(self) -> bytes | None:
        value = self._message.value
        return value if value is None or isinstance(value, bytes) else bytes(value)

    def key(self) -> bytes | None:
        key = self._message.key
        return key if key is None or isinstance(key, bytes) else str(key).encode()

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def headers(self) -> list[tuple[str, bytes | None]]:
        headers: Any = self._message.headers
        pairs = headers.items() if isinstance(headers, dict) else headers or []
        return [(str(k), v if v is None or isinstance(v, bytes) else str(v).encode()) for k, v in pairs]

    def error(self) -> None:
        return None
