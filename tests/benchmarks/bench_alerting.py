"""Alerting benchmark: does the alerting processor keep up with the runtime's burst?

    .venv/bin/python -m tests.benchmarks.bench_alerting [--runs 1000] [--warmup 100]

On a real local stack (free ports, a temporary home, the default rules), `bench_runtime`'s burst
(`--runs` runs produced to the inbox at once) is timed as it appends events to the log: events/s
produced. Meanwhile the alerting processor's committed offsets on the events topic and on its
facts topic are sampled; once both reach the end, the burst's events are consumed, decided and
committed: events/s consumed, from the same start. Its CPU seconds per event are read from
/proc, beside the sink's (the other consumer of every event). Baselines measured in the same
run: a bare confluent-kafka consumer reading the burst's records, and the codec decoding them.

The processor commits every 0.25 s, so the consumed rate is a lower bound, by that much: the
default burst (1000 runs) lasts several.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from schemas.codec import EventCodec
from streams.settings import Settings
from tests.benchmarks.bench_runtime import cpu_seconds, run_load
from tests.free_ports import free_ports

GROUP = "agentlog-alerting"


def lag(settings: Settings, reader: Consumer, topic: str, partitions: int, *, markers: bool) -> int:
    """Records of `topic` past the alerting group's committed offsets. `markers`: the topic is
    written in transactions, so its end is a commit marker no consumer commits past."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    committed = {tp.partition: tp.offset for tp in reader.committed(parts, timeout=10)}
    total = 0
    for p in range(partitions):
        low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        done = committed.get(p, -1)
        if high > low:
            total += max(high - (done if done >= 0 else low) - int(markers), 0)
    return total


def bare_read(settings: Settings, starts: dict[int, int], ends: dict[int, int]) -> tuple[float, list[bytes]]:
    """Seconds a plain consumer takes to read the records between `starts` and `ends`."""
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                       "isolation.level": "read_committed", "enable.partition.eof": True})
    reader.assign([TopicPartition(settings.events_topic, p, o) for p, o in starts.items()])
    values: list[bytes] = []
    todo = {p for p in starts if starts[p] < ends[p]}
    began = time.perf_counter()
    while todo:
        for msg in reader.consume(1000, timeout=1):
            if msg.error():
                if msg.partition() in todo and msg.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(msg.partition())
                continue
            if msg.offset() < ends[msg.partition()]:
                values.append(msg.value())
            if msg.offset() >= ends[msg.partition()] - 1:
                todo.discard(msg.partition())
    elapsed = time.perf_counter() - began
    reader.close()
    return elapsed, values


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=1000)
    args.add_argument("--warmup", type=int, default=100)
    opts = args.parse_args()
    home = Path(tempfile.mkdtemp(prefix="agentlog-bench-alerting-"))
    kafka, controller, gateway, query, smtp = free_ports(5)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")},
           "AGENTLOG_HOME": str(home), "AGENTLOG_KAFKA_PORT": str(kafka),
           "AGENTLOG_CONTROLLER_PORT": str(controller), "AGENTLOG_GATEWAY_PORT": str(gateway),
           "AGENTLOG_QUERY_PORT": str(query), "AGENTLOG_SMTP_PORT": str(smtp),
           "AGENTLOG_SETTINGS_FILE": str(home / "none.env")}
    settings = Settings(home=home, kafka_port=kafka, controller_port=controller,
                        gateway_port=gateway, query_port=query, smtp_port=smtp)
    agentlog = str(Path(sys.executable).with_name("agentlog"))
    subprocess.run([agentlog, "up"], env=env, check=True, capture_output=True)
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": GROUP})
    sink_reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "agentlog-sink"})
    topics = (settings.events_topic, settings.alert_facts_topic)

    def behind() -> int:
        return sum(lag(settings, reader, t, settings.partitions, markers=t == settings.events_topic)
                   for t in topics)

    try:
        status = json.loads(subprocess.run([agentlog, "status", "--json"], env=env, check=True,
                                           capture_output=True, text=True).stdout)
        pids = {name: status["services"][name]["pid"] for name in ("alerting", "sink")}
        run_load(settings, runs=opts.warmup)
        while behind():
            time.sleep(0.2)
        starts = {p: reader.get_watermark_offsets(TopicPartition(settings.events_topic, p), timeout=10)[1]
                  for p in range(settings.partitions)}
        cpu_before = cpu_seconds(pids)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            own = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": GROUP})
            while not stop.is_set():
                samples.append(lag(settings, own, settings.events_topic, settings.partitions, markers=True))
                time.sleep(0.5)
            own.close()

        sampler = threading.Thread(target=sample, daemon=True)
        began = time.perf_counter()
        sampler.start()
        produced_s, burst = run_load(settings, runs=opts.runs)
        at_end = behind()
        events_left = lag(settings, reader, settings.events_topic, settings.partitions, markers=True)
        sink_s = None
        while True:
            now = time.perf_counter() - began
            if sink_s is None and not lag(settings, sink_reader, settings.events_topic, settings.partitions,
                                          markers=True):
                sink_s = now
            if not behind():
                break
            time.sleep(0.1)
        consumed_s = time.perf_counter() - began
        while sink_s is None:
            if not lag(settings, sink_reader, settings.events_topic, settings.partitions, markers=True):
                sink_s = time.perf_counter() - began
            time.sleep(0.1)
        stop.set()
        sampler.join()
        cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(pids).items()}
        ends = {p: reader.get_watermark_offsets(TopicPartition(settings.events_topic, p), timeout=10)[1]
                for p in range(settings.partitions)}
        read_s, values = bare_read(settings, starts, ends)
        codec = EventCodec()
        t = time.perf_counter()
        for value in values:
            codec.decode(value)
        decode_s = time.perf_counter() - t
    finally:
        reader.close()
        sink_reader.close()
        subprocess.run([agentlog, "down"], env=env, check=False, capture_output=True)
    events = sum(len(e) for e in burst.values())
    print(f"alerting benchmark · {os.cpu_count()} CPU(s) · {opts.runs} runs at once, {events} events "
          f"({len(values)} records on the log, transaction markers aside)")
    print(f"produced by the runtime: {events / produced_s:8.0f} events/s ({produced_s:.1f} s, "
          f"{opts.runs / produced_s:.1f} runs/s)")
    print(f"consumed by alerting:    {events / consumed_s:8.0f} events/s ({consumed_s:.1f} s to commit the "
          f"last fact, {consumed_s - produced_s:+.1f} s after the last run ended)")
    print(f"  keeps up: {'yes' if consumed_s <= produced_s + 1.0 else 'NO'} (consumed / produced "
          f"{produced_s / consumed_s:.2f}; committed within a second of the last run's "
          f"end counts as keeping up); lag on the events topic peaked at {max(samples, default=0)} records")
    drain = at_end / max(consumed_s - produced_s, 1e-3)
    print(f"  after the burst: {at_end} records left ({events_left} events, {at_end - events_left} facts), "
          f"drained at {drain:.0f} "
          f"records/s; the sink (same measure, its commits) was done {sink_s - produced_s:+.1f} s after the "
          f"last run ended")
    for name in ("alerting", "sink"):
        print(f"CPU per event, {name:<9} {cpu[name] * 1e6 / events:7.0f} µs ({cpu[name]:.2f} CPU s)")
    print(f"baseline: bare read of the same records {len(values) / read_s:8.0f} records/s; "
          f"decode alone {len(values) / decode_s:8.0f} events/s ({decode_s * 1e6 / len(values):.0f} µs each)")


if __name__ == "__main__":
    main()
