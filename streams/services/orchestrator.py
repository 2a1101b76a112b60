"""Orchestrator service: the only writer of `agentlog.events`.

Consume-transform-produce in Kafka transactions: a batch of inbox records, the events they
append and the inbox offsets commit together, or not at all. Only live runs are held in memory
(a run that ends leaves a 16-byte digest, enough to drop its late records). When partitions
arrive, they are restored from the compacted snapshot topic, which every few seconds gets, in
the same transaction as the events, the runs that changed, plus only the events after it.

Every call to the broker has a deadline. A transaction that cannot complete is aborted, and the
batch is read again from the last commit with state rebuilt; a producer that is fenced or
broken for good ends the process (the watchdog starts a new one).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import NoReturn

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.orchestrator import due_timers, handle
from processors.spans import SpanSpec, log_spans, new_traceparent
from processors.state import RunState
from schemas.codec import EventCodec
from schemas.events import Event, RunRequested
from streams import telemetry
from streams.edge import Intake, LogUnavailable, Outbox, Poison, lag, next_batch, serve
from streams.kafka import consumer, header, headers_for, make_codec, position, producer
from streams.live_runs import LiveRuns
from streams.metrics_export import RUNS
from streams.orchestration import orchestrator_config
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.snapshots import Record

TXN_TIMEOUT_S = 10.0
"""Longest wait of one transactional call; a call that times out is retried until
`TXN_DEADLINE_S`, then the transaction is aborted."""
TXN_DEADLINE_S = 30.0
"""Also the producer's `transaction.timeout.ms`: a transaction whose records are stuck (behind a
leader the producer lost after a paused broker) fails by then instead of librdkafka's 60 s, so
the orchestrator is working again soon after the broker is back."""


class _Abort(LogUnavailable):
    """The transaction cannot be committed: abort it and go on from the last commit."""


class Orchestrator:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.codec: EventCodec = make_codec(self.settings)
        self.config = orchestrator_config(self.settings)
        self.timers_sent: dict[str, set[tuple[str, str, int]]] = {}
        """run_id -> the timer records sent since its state last changed (not sent twice)."""
        self.timer_out = Outbox(producer(self.settings))
        self.next_timer_check = 0.0
        self.inbox: Consumer = consumer(self.settings, "agentlog-orchestrator")
        # A stable transactional.id fences a previous incarnation of this instance.
        self.out = producer(
            self.settings, **{"transactional.id": f"agentlog-orchestrator-{self.settings.instance_id}",
                              # A transaction begun while the last one's markers are still being
                              # written is retried after this; librdkafka's 100 ms stalls a hop.
                              "retry.backoff.ms": 5,
                              "transaction.timeout.ms": int(TXN_DEADLINE_S * 1000)})
        self.outbox = Outbox(self.out, on_delivered=self._delivered)
        # Dead letters are part of the transaction: they commit with the offsets that skip them.
        self.intake = Intake(self.settings, self.codec, service=ctx.name, dead_letters=self.outbox)
        self.live = LiveRuns(self.settings, ctx.name, events=self.codec, intake=self.intake,
                             remember_finished=True)
        self.needs_reset = False
        self.in_transaction = False
        self.ended: list[str] = []
        """Terminal statuses of the runs this transaction ends, counted once it commits."""
        self.spans: list[tuple[SpanSpec, str | None]] = []
        """The spans this transaction's events close, exported once it commits."""
        self.in_txn_end: dict[int, int] = {}
        """Per events partition, the offset after this transaction's last event (from the
        delivery reports): once it commits, where the committed events end."""
        self._txn_thread = ThreadPoolExecutor(1, thread_name_prefix="transactions")

    def _delivered(self, msg: Message) -> None:
        if msg.topic() != self.settings.events_topic:
            return
        partition, offset = msg.partition() or 0, msg.offset() or 0
        self.in_txn_end[partition] = max(self.in_txn_end.get(partition, 0), offset + 1)
        # Where a run's events begin, for rebuilding it should its snapshot be unreadable.
        if header(msg.headers(), "event_type") == "RunStarted":
            self.live.first_offset[(msg.key() or b"").decode()] = offset

    def fire_timers(self) -> None:
        """Send (through the inbox, like anyone else) the timer records that are due:
        approval windows closed, attempts unanswered in time, runs past their limit."""
        if time.monotonic() < self.next_timer_check:
            return
        self.next_timer_check = time.monotonic() + 0.5
        if self.timer_out.failures:  # lost with the broker: send them again
            self.timer_out.failures.clear()
            self.timers_sent.clear()
        now = utcnow()
        for run_id, state in self.live.states.items():
            sent = self.timers_sent.setdefault(run_id, set())
            for payload, cause in due_timers(state, now, self.config):
                key = (type(payload).__name__, cause or "", getattr(payload, "attempt", 0))
                if key in sent:
                    continue
                record = Event.of(payload, run_id=run_id, seq=0, event_id=str(uuid.uuid4()),
                                  causation_id=cause, tenant_id=state.tenant_id, event_time=now,
                                  actor="timer")
                self.timer_out.produce(self.settings.inbox_topic, key=run_id, value=self.codec.encode(record),
                                       headers=headers_for(record, traceparent=state.traceparent))
                sent.add(key)
                self.ctx.log.info("timer: %s for %s (%s)", key[0], run_id, cause)

    def on_assign(self, _c: Consumer, _parts: list[TopicPartition]) -> None:
        # Rebuilt by the main loop, where a broker that does not answer can be waited out.
        self.needs_reset = True

    def on_revoke(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        self.live.drop({tp.partition for tp in parts})

    def process(self, batch: list[Message]) -> None:
        """Apply one batch in one transaction (with a checkpoint when one is due)."""
        pending: dict[str, tuple[RunState, int]] = {}
        offsets: dict[int, int] = {}
        checkpoint = self._checkpoint_records() if self.live.due() else []
        if not batch and not checkpoint:
            return
        self.outbox.failures.clear()
        self.in_txn_end.clear()
        self.ended.clear()
        self.spans.clear()
        self.out.begin_transaction()
        self.in_transaction = True
        for key, value, headers, partition in checkpoint:
            self.outbox.produce(self.live_topic, key=key, value=value, headers=headers, partition=partition)
        for msg in batch:
            partition, offset = position(msg)
            offsets[partition] = offset + 1
            self._apply(msg, pending)
        if offsets:
            positions = [TopicPartition(self.settings.inbox_topic, p, o) for p, o in offsets.items()]
            metadata = self.inbox.consumer_group_metadata()
            self._txn("send_offsets_to_transaction",
                      lambda: self.out.send_offsets_to_transaction(positions, metadata, TXN_TIMEOUT_S))
        self._txn("commit_transaction", lambda: self.out.commit_transaction(TXN_TIMEOUT_S))
        self.in_transaction = False
        self.out.poll(0)  # any delivery report the commit's flush left unserved
        for status in self.ended:
            RUNS.labels(status).inc()
        for span, traceparent in self.spans:
            telemetry.emit(span, traceparent)
        for p, end in self.in_txn_end.items():
            self.live.read_to[p] = max(self.live.read_to.get(p, 0), end)
        for run_id, (state, partition) in pending.items():
            self.timers_sent.pop(run_id, None)
            self.live.put(state, partition)
        self.ctx.progressed()

    @property
    def live_topic(self) -> str:
        return self.settings.snapshots_topic(self.ctx.name)

    def _checkpoint_records(self) -> list[Record]:
        """The snapshot records of everything committed so far: the state covers each partition
        up to where the restore read it, or where the last committed transaction's events end
        (the only writer knows, from its delivery reports, without asking the broker)."""
        return self.live.checkpoint(dict(self.live.read_to), at=utcnow())

    def _txn(self, what: str, call: Callable[[], None]) -> None:
        """`call` until it succeeds; a retriable failure (a timeout, a broker away) is tried
        again until the deadline, anything that needs an abort raises `_Abort`."""
        deadline = time.monotonic() + TXN_DEADLINE_S
        while True:
            try:
                self._bounded(what, call)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not isinstance(err, KafkaError) or err.fatal():
                    raise
                if err.txn_requires_abort() or not err.retriable() or time.monotonic() > deadline:
                    raise _Abort(f"{what}: {err}") from None
                self.ctx.waiting("kafka", f"{what}: {err}")

    def _bounded(self, what: str, call: Callable[[], None]) -> None:
        """`call` on the transactions thread, beating meanwhile. One that outlives its own timeout
        (librdkafka #5456: `send_offsets_to_transaction` can block past it while the group
        coordinator moves) leaves the producer wedged: the process ends, and the one started in
        its place fences it, which aborts its open transaction."""
        done = self._txn_thread.submit(call)
        deadline = time.monotonic() + TXN_TIMEOUT_S + 15
        while True:
            try:
                done.result(timeout=1.0)
                return
            except FutureTimeout:
                self.ctx.beat()
                if time.monotonic() > deadline:
                    self._hand_over(f"{what} did not return in {TXN_TIMEOUT_S + 15:.0f} s")

    def _hand_over(self, why: str) -> NoReturn:
        """End the process, for a fresh producer to take over: the watchdog starts the next one,
        whose `init_transactions` fences this one and aborts its open transaction."""
        self.ctx.log.error("%s: exiting, for a fresh producer to take over", why)
        logging.shutdown()
        os._exit(1)

    def _apply(self, msg: Message, pending: dict[str, tuple[RunState, int]]) -> None:
        try:
            record = self.intake.decode(msg)
        except Poison as exc:
            self.intake.park(msg, str(exc))
            return
        run_id = record.run_id
        if isinstance(record.payload, RunRequested) and record.payload.traceparent is None:
            # Every run has a trace: a producer that names none gets a fresh one.
            record = record.model_copy(update={"payload": record.payload.model_copy(
                update={"traceparent": new_traceparent()})})
        partition, _offset = position(msg)
        state = pending[run_id][0] if run_id in pending else self.live.get(run_id)
        if state is None and self.live.ended(run_id, partition):
            # A run that ended long ago: its late results and repeated requests are dropped.
            self.ctx.log.info("dropped %s for %s: the run ended earlier", record.event_type, run_id)
            return
        try:
            outcome = handle(state, record, now=utcnow(), config=self.config)
        except Exception as exc:  # a record the decisions cannot take must not stop the writer
            self.ctx.log.error("cannot apply %s to %s", record.event_type, run_id, exc_info=exc)
            self.intake.park(msg, f"not applicable: {exc!r}")
            return
        if outcome.invalid:
            self.intake.park(msg, outcome.dropped or "invalid")
        elif outcome.dropped:
            self.ctx.log.info("dropped %s for %s: %s", record.event_type, run_id, outcome.dropped)
        trace = outcome.state.traceparent if outcome.state is not None else None
        if telemetry.enabled():
            self.spans.extend((span, trace) for span in log_spans(state, outcome.events, outcome.state))
        for event in outcome.events:
            if event.is_terminal:
                self.ended.append(event.event_type.removeprefix("Run").lower())
            # Same partition number as the inbox record: the run's events stay where its
            # state is rebuilt from, whatever partitioner the requester used.
            self.outbox.produce(self.settings.events_topic, key=event.run_id,
                                value=self.codec.encode(event), partition=partition,
                                headers=headers_for(event, traceparent=trace))
        if outcome.state is not None and outcome.events:
            pending[run_id] = (outcome.state, partition)

    def abort(self) -> None:
        """Abort the open transaction, waiting out a broker that is away, for `TXN_DEADLINE_S`:
        a producer that cannot abort by then (seen after a paused broker: its transaction's
        records stuck behind a leader it no longer knew, each abort timing out while the
        heartbeat said "waiting for kafka") hands over to a fresh one."""
        deadline = time.monotonic() + TXN_DEADLINE_S
        while self.in_transaction:
            try:
                self._bounded("abort_transaction", lambda: self.out.abort_transaction(TXN_TIMEOUT_S))
                self.in_transaction = False
            except KafkaException as exc:
                err = exc.args[0]
                if not isinstance(err, KafkaError) or err.fatal() or not err.retriable():
                    raise
                if time.monotonic() > deadline:
                    self._hand_over(f"abort_transaction failed for {TXN_DEADLINE_S:.0f} s ({err})")
                self.ctx.waiting("kafka", f"abort_transaction: {err}")
                time.sleep(0.5)  # an abort refused at once is not tried again in a busy loop

    def reset(self) -> None:
        """Restore the assigned partitions and read again from the committed offsets."""
        parts = self.inbox.assignment()
        try:
            committed = self.inbox.committed(parts, timeout=10)
        except KafkaException as exc:
            raise LogUnavailable(f"committed offsets not read: {exc.args[0]}") from None
        self.timers_sent.clear()
        done = self.live.restore(sorted(tp.partition for tp in parts))
        for tp in committed:
            self.inbox.seek(TopicPartition(tp.topic, tp.partition,
                                           tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self.ctx.log.info("inbox partitions %s: %d live runs from %d snapshots and %d events after them "
                          "in %.2f s%s", [tp.partition for tp in parts], done.runs, done.snapshots,
                          done.tail_events, done.seconds,
                          f"; rebuilt from their events: {list(done.rebuilt)}" if done.rebuilt else "")
        self.needs_reset = False
        self.ctx.mark_ready()

    def step(self) -> None:
        self.fire_timers()
        batch = next_batch(self.inbox, max_messages=500, timeout_s=0.1)
        if self.needs_reset:
            self.reset()  # the batch read before it is read again from the committed offsets
            return
        self.ctx.lag = lag(self.inbox, service=self.ctx.name)
        batch = [m for m in batch if not self.intake.consume_error(m)]
        self.process(batch)
        if not batch:
            self.ctx.progressed()

    def recover(self, _exc: Exception) -> None:
        """After a failed transaction: abort it, then restore and read again from the commit."""
        try:
            self.abort()
        except KafkaException as broken:
            self.ctx.log.error("transaction not aborted (%s); exiting", broken)
            raise SystemExit(1) from None
        self.needs_reset = True

    def run(self) -> None:
        self._bounded("init_transactions", lambda: self.out.init_transactions(TXN_TIMEOUT_S))
        self.inbox.subscribe([self.settings.inbox_topic], on_assign=self.on_assign,
                             on_revoke=self.on_revoke)
        try:
            serve(self.ctx, self.step, recover=self.recover)
        finally:
            self.timer_out.producer.flush(10)
            self.inbox.close()
            self.ctx.close()


def main() -> None:
    Orchestrator(ServiceContext("orchestrator", load_settings())).run()


if __name__ == "__main__":
    main()
