"""Orchestrator service: the only writer of `agentlog.events`.

Consume-transform-produce in Kafka transactions: a batch of inbox records, the events they
append and the inbox offsets commit together, or not at all. Run state lives in memory and is
rebuilt from the events topic whenever partitions are assigned (never from a private store).
"""

from __future__ import annotations

from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition,
)

from processors.orchestrator import OrchestratorConfig, handle
from processors.state import RunState, evolve
from processors.tools.registry import default_registry
from schemas.codec import DecodeError, EventCodec
from streams.kafka import consumer, headers_for, make_codec, producer
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings


class Orchestrator:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.codec: EventCodec = make_codec(self.settings)
        self.config = OrchestratorConfig(
            tool_costs={t.name: t.cost_usd for t in default_registry()})
        self.states: dict[str, RunState] = {}
        self.partition_of: dict[str, int] = {}
        self.inbox: Consumer = consumer(self.settings, "agentlog-orchestrator")
        # A stable transactional.id fences a previous incarnation of this instance.
        self.out: Producer = producer(
            self.settings, **{"transactional.id": f"agentlog-orchestrator-{self.settings.instance_id}"})

    def rebuild(self, partitions: list[int]) -> int:
        """Fold the events of `partitions` into run states; returns the events read."""
        reader = consumer(self.settings, None, **{"enable.partition.eof": True})
        todo = set()
        for p in partitions:
            low, high = reader.get_watermark_offsets(
                TopicPartition(self.settings.events_topic, p), timeout=10)
            if high > low:
                todo.add(p)
        reader.assign([TopicPartition(self.settings.events_topic, p, OFFSET_BEGINNING) for p in todo])
        count = 0
        while todo:
            for msg in reader.consume(1000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                event = self.codec.decode(msg.value())
                self.states[event.run_id] = evolve(self.states.get(event.run_id), event)
                self.partition_of[event.run_id] = msg.partition()
                count += 1
        reader.close()
        return count

    def on_assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        n = self.rebuild([tp.partition for tp in parts])
        self.ctx.log.info("assigned inbox partitions %s; rebuilt %d runs from %d events",
                          [tp.partition for tp in parts], len(self.states), n)
        self.ctx.mark_ready()

    def on_revoke(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in parts}
        self.states = {k: s for k, s in self.states.items()
                       if self.partition_of.get(k) not in gone}

    def process(self, batch: list[Message]) -> None:
        """Apply one batch in one transaction."""
        pending: dict[str, RunState] = {}
        offsets: dict[int, int] = {}
        self.out.begin_transaction()
        for msg in batch:
            offsets[msg.partition()] = msg.offset() + 1
            self._apply(msg, pending)
        self.out.send_offsets_to_transaction(
            [TopicPartition(self.settings.inbox_topic, p, o) for p, o in offsets.items()],
            self.inbox.consumer_group_metadata())
        self.out.commit_transaction()
        self.states.update(pending)

    def _apply(self, msg: Message, pending: dict[str, RunState]) -> None:
        try:
            record = self.codec.decode(msg.value())
        except DecodeError as exc:
            self.ctx.dead_letter(self.out, msg, f"undecodable: {exc}")
            return
        if (msg.key() or b"").decode(errors="replace") != record.run_id:
            self.ctx.dead_letter(self.out, msg, f"key {msg.key()!r} is not the run id {record.run_id}")
            return
        state = pending.get(record.run_id) or self.states.get(record.run_id)
        outcome = handle(state, record, now=utcnow(), config=self.config)
        if outcome.invalid:
            self.ctx.dead_letter(self.out, msg, outcome.dropped or "invalid")
        elif outcome.dropped:
            self.ctx.log.info("dropped %s for %s: %s", record.event_type, record.run_id, outcome.dropped)
        for event in outcome.events:
            # Same partition number as the inbox record: the run's events stay where its
            # state is rebuilt from, whatever partitioner the requester used.
            self.out.produce(self.settings.events_topic, key=event.run_id,
                             value=self.codec.encode(event), partition=msg.partition(),
                             headers=headers_for(event))
        if outcome.state is not None:
            pending[record.run_id] = outcome.state
            self.partition_of[record.run_id] = msg.partition()

    def reset(self) -> None:
        """After an aborted transaction: forget, rebuild, and re-read from committed offsets."""
        parts = self.inbox.assignment()
        self.states.clear()
        self.rebuild([tp.partition for tp in parts])
        for tp in self.inbox.committed(parts, timeout=10):
            self.inbox.seek(TopicPartition(tp.topic, tp.partition,
                                           tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    def run(self) -> None:
        self.out.init_transactions(30)
        self.inbox.subscribe([self.settings.inbox_topic], on_assign=self.on_assign,
                             on_revoke=self.on_revoke)
        try:
            while not self.ctx.stopping:
                batch = [m for m in self.inbox.consume(500, timeout=0.1) if not self._error(m)]
                if not batch:
                    continue
                try:
                    self.process(batch)
                except KafkaException as exc:
                    err = exc.args[0]
                    if not (isinstance(err, KafkaError) and err.txn_requires_abort()):
                        raise
                    self.ctx.log.warning("transaction aborted (%s); rebuilding", err)
                    self.out.abort_transaction()
                    self.reset()
        finally:
            self.inbox.close()
            self.ctx.close()

    def _error(self, msg: Message) -> bool:
        if msg.error() is None:
            return False
        self.ctx.log.warning("consume error: %s", msg.error())
        return True


def main() -> None:
    Orchestrator(ServiceContext("orchestrator", load_settings())).run()


if __name__ == "__main__":
    main()
