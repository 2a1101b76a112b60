"""What the alerting processor needs of Faust beyond its defaults, kept in one place.

* A transport whose consumers read committed records only. Faust reads `read_committed` only
  under its (experimental) exactly-once guarantee; the events topic is written in transactions,
  so an at-least-once Faust consumer would otherwise count the events of an aborted one. Its
  consumers also commit past transaction markers (`merge_gaps`), which Faust's own bookkeeping
  does one transaction per commit.
* `FaustRecord`: a consumed Faust message seen as the confluent-kafka `Message` the edge's
  `Intake` decodes and dead-letters, so a NULL or undecodable record takes the same path here as
  in every other consumer.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message
from intervaltree import IntervalTree  # type: ignore[import-untyped]

__all__ = ["SCHEME", "CommittedTransport", "FaustRecord", "broker_urls", "merge_gaps"]

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

    def _new_offset(self, tp: TP) -> int | None:
        # Faust notes a gap where offsets jump (a transaction's commit marker between two
        # records) as the range up to and including the next record; merged into the acked
        # offsets, that record is then there twice, which ends the run of consecutive offsets
        # Faust commits up to: one transaction per commit, and the committed offset falls ever
        # further behind a transactional topic (faust-streaming issue #606). Merged here first
        # without duplicates, up to the highest acked offset (a stream acks a partition's
        # records in order, so every record below it is done).
        merge_gaps(self._acked[tp], self._gap[tp])
        offset: int | None = super()._new_offset(tp)
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust yields to the loop and re-merges the whole interval tree for every gap; on a topic
        # with a marker after nearly every record that is most of the work (10 s for 10,000
        # records, 1 s without). `merge_gaps` copes with overlapping intervals, so adding is enough.
        committed = self._committed_offset[tp]
        if committed is not None:
            offset_from = max(offset_from, committed + 1)
        if offset_from <= offset_to:
            self._gap[tp].addi(offset_from, offset_to + 1)


def merge_gaps(acked: list[int], gaps: IntervalTree) -> None:
    """Move the gap offsets up to the highest acked one into `acked` (sorted, each once)."""
    if not acked or not gaps:
        return
    top = max(acked)
    filled = {o for span in gaps.overlap(0, top + 1) for o in range(span.begin, min(span.end, top + 1))}
    if filled:
        acked.extend(sorted(filled - set(acked)))
        acked.sort()
        gaps.chop(0, top + 1)


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
