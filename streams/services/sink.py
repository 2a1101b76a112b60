"""ClickHouse sink: every event of the log into `agent_events`, and every alert record into
`alerts`, each exactly once.

A batch is inserted atomically with a deduplication token, and offsets are committed only
after ClickHouse accepted it. After a crash between the two, the sink resumes after the
highest offset the table already holds (which the table's own parts tell: see sinks/ddl.py), so
nothing is stored twice. A batch the store refuses
is not committed: it is read again from the last commit and retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from schemas.alert_codec import AlertCodec
from schemas.codec import DecodeError
from sinks.alerts import AlertRow, alert_row, insert_alerts, stored_alert_offsets
from sinks.clickhouse import ClickHouseStore, EventRow, event_row
from streams.edge import Intake, LogUnavailable, Outbox, commit, lag, serve
from streams.kafka import consumer, make_codec, position, producer
from streams.query_api import chdb_path, clickhouse_password, serve_queries
from streams.service import ServiceContext
from streams.settings import load_settings


def resume_after(source: Consumer, topic: str, parts: list[TopicPartition],
                 stored: dict[int, int]) -> None:
    """Seek each assigned partition to after what the table holds (`stored`, per partition), or to
    the committed offset if that is later."""
    try:
        committed = {tp.partition: tp.offset for tp in source.committed(parts, timeout=10)}
    except KafkaException as exc:
        raise LogUnavailable(f"committed offsets not read: {exc.args[0]}") from None
    for tp in parts:
        resume = max(stored.get(tp.partition, -1) + 1, committed.get(tp.partition, -1))
        source.seek(TopicPartition(topic, tp.partition, resume if resume > 0 else OFFSET_BEGINNING))


def batch_token(topic: str, ranges: dict[int, list[int]]) -> str:
    """The deduplication token of a batch: its offsets, so the same batch again inserts nothing."""
    return topic + ":" + ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(ranges.items()))


def insert_then_commit(ctx: ServiceContext, lock: threading.Lock, source: Consumer, out: Outbox,
                       insert: Callable[[], None]) -> bool:
    """One batch into the store, then its dead letters delivered and its offsets committed;
    False when the store refused it (nothing committed: the batch is read again)."""
    try:
        with lock:
            insert()
    except Exception as exc:  # noqa: BLE001 - the store's own errors; nothing is committed
        ctx.waiting("clickhouse", exc)
        return False
    out.flush(30)
    commit(source)
    return True


class AlertSink:
    """`agentlog.alerts` into the `alerts` table with the events' discipline: one insert per batch
    with a deduplication token, the commit after it, a restart resuming after what the table holds.
    Polled between the events' batches without waiting: alerts are few."""

    def __init__(self, ctx: ServiceContext, client: Client, lock: threading.Lock, intake: Intake,
                 out: Outbox) -> None:
        self.ctx = ctx
        self.client = client
        self.lock = lock
        self.intake = intake
        self.out = out
        self.topic = ctx.settings.alerts_topic
        self.codec = AlertCodec()
        self.source = consumer(ctx.settings, "agentlog-sink-alerts")
        self.needs_reset = False

    def on_assign(self, _c: Consumer, _parts: list[TopicPartition]) -> None:
        self.needs_reset = True

    def reset(self) -> None:
        parts = self.source.assignment()
        with self.lock:
            stored = stored_alert_offsets(self.client, self.topic)
        resume_after(self.source, self.topic, parts, stored)
        self.needs_reset = False

    def step(self) -> None:
        batch = self.source.consume(500, timeout=0)
        if self.needs_reset:
            self.reset()
            return
        rows: list[AlertRow] = []
        ranges: dict[int, list[int]] = {}
        for msg in batch:
            if self.intake.consume_error(msg):
                continue
            partition, offset = position(msg)
            try:
                alert = self.codec.decode(msg.value() or b"")
            except DecodeError as exc:
                self.intake.park(msg, f"undecodable: {exc}")
                continue
            rows.append(alert_row(alert, topic=self.topic, partition=partition, offset=offset))
            ranges.setdefault(partition, [offset, offset])[1] = offset
        if not batch:
            return
        token = batch_token(self.topic, ranges)
        if not insert_then_commit(self.ctx, self.lock, self.source, self.out,
                                  lambda: insert_alerts(self.client, rows, token=token)):
            self.needs_reset = True


class Sink:
    def __init__(self, ctx: ServiceContext, store: ClickHouseStore, lock: threading.Lock,
                 alerts_client: Client | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.store = store
        self.lock = lock
        self.topic = self.settings.events_topic
        self.out = Outbox(producer(self.settings))
        self.intake = Intake(self.settings, make_codec(self.settings), service=ctx.name,
                             dead_letters=self.out)
        self.source = consumer(self.settings, "agentlog-sink")
        self.needs_reset = False
        self.alerts = (AlertSink(ctx, alerts_client, lock, self.intake, self.out)
                       if alerts_client is not None else None)

    def on_assign(self, _c: Consumer, _parts: list[TopicPartition]) -> None:
        self.needs_reset = True

    def reset(self) -> None:
        """Go on from after what the table holds, or the committed offset if that is later."""
        parts = self.source.assignment()
        with self.lock:
            stored = self.store.stored_offsets(self.topic)
            self.store.through(self.topic)  # known from now on, for run reads
            self.store.repair_views()
        resume_after(self.source, self.topic, parts, stored)
        self.needs_reset = False
        self.ctx.mark_ready()

    def step(self) -> None:
        if self.alerts is not None:
            self.alerts.step()
        batch = self._gather()
        if self.needs_reset:
            self.reset()
            return
        self.ctx.lag = lag(self.source, service=self.ctx.name)
        rows: list[EventRow] = []
        ranges: dict[int, list[int]] = {}
        for msg, event in self.intake.events(batch):
            partition, offset = position(msg)
            rows.append(event_row(event, topic=self.topic, partition=partition, offset=offset))
            r = ranges.setdefault(partition, [offset, offset])
            r[1] = offset
        self.ctx.parked = sum(self.intake.parked.values())
        if not batch:
            self.ctx.progressed()
            return
        token = batch_token(self.topic, ranges)
        if not insert_then_commit(self.ctx, self.lock, self.source, self.out,
                                  lambda: self.store.insert_events(rows, token=token)):
            self.needs_reset = True
            return
        self.ctx.progressed()

    def _gather(self) -> list[Message]:
        """Records for one insert: what arrives within `sink_batch_s` (ClickHouse prefers fewer,
        larger inserts), up to 20,000."""
        deadline = time.monotonic() + self.settings.sink_batch_s
        batch: list[Message] = []
        while len(batch) < 20_000:
            batch += self.source.consume(min(2000, 20_000 - len(batch)),
                                         timeout=max(deadline - time.monotonic(), 0.0))
            if time.monotonic() >= deadline or self.needs_reset or self.ctx.stopping:
                break
            self.ctx.beat()
        return batch

    def run(self) -> None:
        self.source.subscribe([self.topic], on_assign=self.on_assign)
        if self.alerts is not None:
            self.alerts.source.subscribe([self.alerts.topic], on_assign=self.alerts.on_assign)
        try:
            serve(self.ctx, self.step, recover=self.recover)
        finally:
            self.source.close()
            if self.alerts is not None:
                self.alerts.source.close()
            self.out.producer.flush(10)

    def recover(self, _exc: Exception) -> None:
        self.needs_reset = True
        if self.alerts is not None:
            self.alerts.needs_reset = True


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("sink", settings)
    store = ClickHouseStore.connect(url=settings.clickhouse_url, chdb_path=str(chdb_path(settings)),
                                    password=clickhouse_password(settings))
    lock = threading.Lock()
    server = None if settings.clickhouse_url else serve_queries(store, lock, settings=settings)
    # A client of its own for the alerts table (chDB allows several in the owning process).
    alerts_client = clickhouse_connect.get_client(dsn=settings.clickhouse_url or f"chdb://{chdb_path(settings)}",
                                                  password=clickhouse_password(settings) or "")
    try:
        Sink(ctx, store, lock, alerts_client).run()
    finally:
        if server is not None:
            server.shutdown()
        ctx.close()


if __name__ == "__main__":
    main()
