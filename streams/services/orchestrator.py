"""Orchestrator service: the only writer of `agentlog.events`.

Consume-transform-produce in Kafka transactions: a batch of inbox records, the events they
append and the inbox offsets commit together, or not at all. Run state lives in memory and is
rebuilt from the events topic whenever partitions are assigned (never from a private store).
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processors.orchestrator import due_timers, handle
from processors.state import RunState
from schemas.codec import DecodeError, EventCodec
from schemas.events import Event
from streams.kafka import consumer, headers_for, make_codec, next_batch, producer
from streams.orchestration import orchestrator_config
from streams.rebuild import fold_partitions
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings


class Orchestrator:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.codec: EventCodec = make_codec(self.settings)
        self.config = orchestrator_config(self.settings)
        self.states: dict[str, RunState] = {}
        self.partition_of: dict[str, int] = {}
        self.active: set[str] = set()
        """Runs not yet ended: the ones the timer looks at."""
        self.timers_sent: dict[str, set[tuple[str, str, int]]] = {}
        """run_id -> the timer records sent since its state last changed (not sent twice)."""
        self.timer_out: Producer = producer(self.settings)
        self.next_timer_check = 0.0
        self.inbox: Consumer = consumer(self.settings, "agentlog-orchestrator")
        # A stable transactional.id fences a previous incarnation of this instance.
        self.out: Producer = producer(
            self.settings, **{"transactional.id": f"agentlog-orchestrator-{self.settings.instance_id}",
                              # A transaction begun while the last one's markers are still being
                              # written is retried after this; librdkafka's 100 ms stalls a hop.
                              "retry.backoff.ms": 5})

    def rebuild(self, partitions: list[int]) -> int:
        """Fold the events of `partitions` into run states; returns the events read."""
        n = fold_partitions(self.settings, self.codec, dict.fromkeys(partitions),
                            self.states, self.partition_of)
        for run_id, state in self.states.items():
            self._track(run_id, state)
        return n

    def _track(self, run_id: str, state: RunState) -> None:
        self.timers_sent.pop(run_id, None)
        if state.terminal:
            self.active.discard(run_id)
        else:
            self.active.add(run_id)

    def fire_timers(self) -> None:
        """Send (through the inbox, like anyone else) the timer records that are due:
        approval windows closed, attempts unanswered in time, runs past their limit."""
        if time.monotonic() < self.next_timer_check:
            return
        self.next_timer_check = time.monotonic() + 0.5
        now = utcnow()
        for run_id in list(self.active):
            state = self.states.get(run_id)
            if state is None:
                self.active.discard(run_id)
                continue
            sent = self.timers_sent.setdefault(run_id, set())
            for payload, cause in due_timers(state, now, self.config):
                key = (type(payload).__name__, cause or "", getattr(payload, "attempt", 0))
                if key in sent:
                    continue
                record = Event.of(payload, run_id=run_id, seq=0, event_id=str(uuid.uuid4()),
                                  causation_id=cause, tenant_id=state.tenant_id, event_time=now,
                                  actor="timer")
                self.timer_out.produce(self.settings.inbox_topic, key=run_id,
                                       value=self.codec.encode(record), headers=headers_for(record))
                sent.add(key)
                self.ctx.log.info("timer: %s for %s (%s)", key[0], run_id, cause)
        self.timer_out.poll(0)

    def on_assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        n = self.rebuild([tp.partition for tp in parts])
        self.ctx.log.info("assigned inbox partitions %s; rebuilt %d runs from %d events",
                          [tp.partition for tp in parts], len(self.states), n)
        self.ctx.mark_ready()

    def on_revoke(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in parts}
        self.states = {k: s for k, s in self.states.items()
                       if self.partition_of.get(k) not in gone}
        self.active &= self.states.keys()

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
        for run_id, state in pending.items():
            self._track(run_id, state)

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
        self.active.clear()
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
                self.fire_timers()
                batch = next_batch(self.inbox, max_messages=500, timeout_s=0.1)
                batch = [m for m in batch if not self._error(m)]
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
            self.timer_out.flush(10)
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
