"""Run state rebuilt from the events topic: what a processor knows after a (re)start."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from processors.state import RunState, evolve
from schemas.codec import EventCodec
from streams.kafka import consumer
from streams.settings import Settings

__all__ = ["fold_partitions"]


def fold_partitions(settings: Settings, codec: EventCodec, until: Mapping[int, int | None],
                    states: dict[str, RunState], partition_of: dict[str, int]) -> int:
    """Fold the events of each partition in `until`, from its start up to the given offset
    (exclusive; None: to the end of what is committed), into `states`. Returns events read."""
    topic = settings.events_topic
    reader = consumer(settings, None, **{"enable.partition.eof": True})
    todo: dict[int, int | None] = {}
    for p, stop in until.items():
        low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low and (stop is None or stop > low):
            todo[p] = stop
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
    count = 0
    try:
        while todo:
            for msg in reader.consume(1000, timeout=1.0):
                err, p = msg.error(), msg.partition()
                if p not in todo:
                    continue
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    del todo[p]
                    continue
                stop = todo[p]
                if stop is not None and msg.offset() >= stop:
                    del todo[p]
                    reader.incremental_unassign([TopicPartition(topic, p)])
                    continue
                event = codec.decode(msg.value())
                states[event.run_id] = evolve(states.get(event.run_id), event)
                partition_of[event.run_id] = p
                count += 1
    finally:
        reader.close()
    return count
