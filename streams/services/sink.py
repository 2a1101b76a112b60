"""ClickHouse sink: every event of the log into `agent_events`, each exactly once.

A batch is inserted atomically with a deduplication token, and offsets are committed only
after ClickHouse accepted it. After a crash between the two, the sink resumes after the
highest offset the table already holds, so nothing is stored twice.
"""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, TopicPartition

from schemas.codec import DecodeError
from sinks.clickhouse import ClickHouseStore, EventRow, event_row
from streams.kafka import consumer, make_codec, producer
from streams.query_api import chdb_path, clickhouse_password, serve_queries
from streams.service import ServiceContext
from streams.settings import load_settings


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("sink", settings)
    store = ClickHouseStore.connect(url=settings.clickhouse_url, chdb_path=str(chdb_path(settings)),
                                    password=clickhouse_password(settings))
    lock = threading.Lock()
    server = serve_queries(store, lock, port=settings.query_port) if not settings.clickhouse_url else None
    codec = make_codec(settings)
    dead = producer(settings)
    source = consumer(settings, "agentlog-sink")
    topic = settings.events_topic

    def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
        with lock:
            stored = store.stored_offsets(topic)
        committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
        for tp in parts:
            resume = stored.get(tp.partition, -1) + 1
            if resume > max(committed.get(tp.partition, -1), 0):
                tp.offset = resume
        c.assign(parts)
        ctx.mark_ready()

    source.subscribe([topic], on_assign=on_assign)
    try:
        while not ctx.stopping:
            batch = source.consume(2000, timeout=0.3)
            rows: list[EventRow] = []
            ranges: dict[int, list[int]] = {}
            for msg in batch:
                if msg.error():
                    ctx.log.warning("consume error: %s", msg.error())
                    continue
                try:
                    event = codec.decode(msg.value())
                except DecodeError as exc:
                    ctx.dead_letter(dead, msg, f"undecodable: {exc}")
                    continue
                rows.append(event_row(event, topic=topic, partition=msg.partition(), offset=msg.offset()))
                r = ranges.setdefault(msg.partition(), [msg.offset(), msg.offset()])
                r[1] = msg.offset()
            if not batch:
                continue
            token = topic + ":" + ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(ranges.items()))
            with lock:
                store.insert_events(rows, token=token)
            dead.flush(30)
            source.commit(asynchronous=False)
    finally:
        source.close()
        if server is not None:
            server.shutdown()
        ctx.close()


if __name__ == "__main__":
    main()
