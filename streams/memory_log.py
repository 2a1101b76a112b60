"""The memory log on Kafka (`agentlog.memory`, keyed by tenant): every memory operation appends
what it changed before the store is touched, so the store can be rebuilt from the log and a
forget is on record (`processors/memory/ledger.py` folds it)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from confluent_kafka import KafkaError, Message

from schemas.codec import DecodeError
from schemas.memory_log import MemoryChange
from schemas.memory_log_codec import MemoryChangeCodec
from streams.edge import LogUnavailable, read_partitions
from streams.kafka import producer
from streams.partitioning import partition_for
from streams.settings import Settings

__all__ = ["MemoryLog", "MemoryLogUnavailable"]

log = logging.getLogger(__name__)


class MemoryLogUnavailable(RuntimeError):
    """The memory log did not take the change: the operation must not touch the store."""


class MemoryLog:
    """Appends to and reads the memory topic."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        """timeout_s: the longest wait for the broker to acknowledge one change."""
        self._settings = settings
        self._topic = settings.memory_topic
        self._codec = MemoryChangeCodec()
        self._timeout_s = timeout_s
        self._producer = producer(settings, **{"message.timeout.ms": int(timeout_s * 1000)})

    def append(self, change: MemoryChange) -> None:
        """Write `change` and wait until every in-sync replica has it; `MemoryLogUnavailable` if not."""
        failed: list[KafkaError] = []

        def done(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append(err)

        self._producer.produce(self._topic, key=change.tenant_id.encode(), value=self._codec.encode(change),
                               headers=[("change_type", change.kind.encode())], on_delivery=done)
        left = self._producer.flush(self._timeout_s + 1)
        if failed or left:
            raise MemoryLogUnavailable(
                f"the memory log {self._topic} at {self._settings.bootstrap_servers} did not take the change "
                f"({failed[0] if failed else 'no answer'}); nothing was changed")

    def changes(self, *, tenant_id: str | None = None) -> Iterator[MemoryChange]:
        """Every change recorded, in log order per tenant (only `tenant_id`'s when given: its partition)."""
        partitions = ([partition_for(tenant_id, self._settings.partitions)] if tenant_id is not None
                      else list(range(self._settings.partitions)))
        try:
            starts = dict.fromkeys(partitions, 0)
            for msg in read_partitions(self._settings, self._topic, starts, timeout_s=30):
                if tenant_id is not None and msg.key() != tenant_id.encode():
                    continue
                try:
                    yield self._codec.decode(msg.value() or b"")
                except DecodeError as exc:  # a damaged record is skipped, and said
                    log.warning("%s[%s]@%s skipped: %s", self._topic, msg.partition(), msg.offset(), exc)
        except LogUnavailable as exc:
            raise MemoryLogUnavailable(str(exc)) from None

    def close(self) -> None:
        self._producer.flush(self._timeout_s)
