"""Runtime benchmark: sustained runs per second and per-hop latency on a real local stack,
beside a bare confluent-kafka produce → consume round trip on the same broker.

    .venv/bin/python -m tests.benchmarks.bench_runtime [--runs 300] [--rate R] [--rtt 2000]
        [--sandbox process,enforced] [--calls 1000]

Two loads, one after the other. A burst (`--runs` runs submitted at once) gives the capacity:
runs per second until the last one ends, and the CPU seconds each process spent per run. Then
the same number of runs submitted at a steady `--rate` runs/s (default: half the burst's
capacity) gives the latency of a hop when the stack is not saturated; in a burst every hop
mostly measures the queue in front of it.

A hop is one event appended to the run's next event appended (both stamped by the orchestrator
when it appends), so it includes the worker's consume, decision, answer and the orchestrator's
transaction. Starts its own stack on free ports in a temporary home and stops it afterwards,
once per executor sandbox named by `--sandbox` (by default the plain child, then the enforced
bubblewrap box), and compares them: the burst, the executor's CPU, and the time of a call through
the sandbox pool itself (the per-call overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.tools.backends import BackendConfig
from processors.tools.backends.sql import create_sample_database
from processors.tools.registry import default_registry
from processors.tools.sandbox_pool import SandboxPool
from schemas.events import Event, ToolExecuted
from streams.kafka import headers_for, make_codec, producer
from streams.runs import request_run, run_request
from streams.settings import Settings
from tests.free_ports import free_ports

TEXTS = ["What is our refund policy for annual plans?", "How many customers do we have in Germany?",
         "Open a ticket: badge reader broken", "How many orders are pending?"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline_rtt(settings: Settings, *, n: int, size: int) -> list[float]:
    """Milliseconds from produce to consume of one message, one at a time."""
    topic = f"bench.rtt.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})  # kept alive until done
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    prod = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 0})
    cons = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": topic,
                     "auto.offset.reset": "earliest", "fetch.wait.max.ms": 1})
    cons.assign([TopicPartition(topic, 0, 0)])
    payload = b"x" * size
    out = []
    for _ in range(n):
        start = time.perf_counter()
        prod.produce(topic, key=b"k", value=payload)
        prod.flush()
        msg = None
        while msg is None or msg.error():
            msg = cons.poll(1.0)
        out.append((time.perf_counter() - start) * 1000)
    cons.close()
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def run_load(settings: Settings, *, runs: int,
             rate: float | None = None) -> tuple[float, dict[str, list[Event]]]:
    """Submit `runs` runs (at once, or `rate` per second); returns seconds until the last one
    ended, and the runs' events."""
    codec = make_codec(settings)
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                       "isolation.level": "read_committed", "auto.offset.reset": "latest"})
    reader.subscribe([settings.events_topic])
    while not reader.assignment():
        reader.poll(0.2)
    out = producer(settings)
    started = time.perf_counter()
    ids = set()
    for i in range(runs):
        if rate:  # one at a time, each acknowledged, as clients of a steady service send them
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            ids.add(request_run(settings, out, codec, text=TEXTS[i % len(TEXTS)], tenant_id="bench",
                                idempotency_key=uuid.uuid4().hex))
            continue
        # A burst: every request produced before any is acknowledged (no wait per request).
        record = run_request(text=TEXTS[i % len(TEXTS)], tenant_id="bench",
                             idempotency_key=uuid.uuid4().hex)
        out.produce(settings.inbox_topic, key=record.run_id, value=codec.encode(record),
                    headers=headers_for(record))
        out.poll(0)
        ids.add(record.run_id)
    out.flush(60)
    events: dict[str, list[Event]] = defaultdict(list)
    done: set[str] = set()
    deadline = time.monotonic() + 600
    while done != ids and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is None or msg.error():
            continue
        event = codec.decode(msg.value())
        if event.run_id in ids:
            events[event.run_id].append(event)
            if event.is_terminal:
                done.add(event.run_id)
    elapsed = time.perf_counter() - started
    reader.close()
    if done != ids:
        raise SystemExit(f"only {len(done)} of {runs} runs ended within 600 s")
    return elapsed, events


def hop_table(runs: dict[str, list[Event]]) -> list[float]:
    """Print p50/p99 per kind of hop; returns every hop's milliseconds."""
    hops: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for evs in runs.values():
        evs.sort(key=lambda e: e.seq)
        for a, b in pairwise(evs):
            ms = (b.event_time - a.event_time).total_seconds() * 1000
            if b.actor != "orchestrator":  # a worker's answer: a real hop through Kafka
                hops[f"{a.event_type} → {b.event_type}"].append(ms)
                every.append(ms)
    print(f"{'hop (worker answer appended)':<44}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}")
    for name, values in sorted(hops.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"{name:<44}{len(values):>6}{_pct(values, .5):>9.1f}{_pct(values, .99):>9.1f}")
    print(f"{'all worker hops':<44}{len(every):>6}{_pct(every, .5):>9.1f}{_pct(every, .99):>9.1f}")
    return every


def sandbox_calls(mode: str, *, calls: int) -> dict[str, list[float]]:
    """Milliseconds of `calls` calls of each built-in read tool through the executor's sandbox
    pool (one warm child, as a slot of the executor has), start-up excluded."""
    home = Path(tempfile.mkdtemp(prefix="agentlog-bench-sandbox-"))
    create_sample_database(str(home / "backends" / "shop.db"))
    cfg = BackendConfig(docs_dir=str(Settings().docs_dir), sql_path=str(home / "backends" / "shop.db"),
                        tickets_path=str(home / "backends" / "tickets.db"), smtp_host="127.0.0.1",
                        smtp_port=1, mail_from="bench@example.com")
    registry = default_registry()
    pool = SandboxPool(mode=mode, size=1, hide=(str(home),))  # type: ignore[arg-type]
    out: dict[str, list[float]] = {}
    try:
        for tool, tool_input in [("query_sql", {"sql": "SELECT count(*) FROM customers"}),
                                 ("search_docs", {"query": "refund policy"})]:
            spec = registry.get(tool)
            assert spec is not None
            pool.run(spec, input=tool_input, cfg=cfg, idempotency_key="bench/0")  # the start-up
            times = []
            for i in range(calls):
                start = time.perf_counter()
                outcome = pool.run(spec, input=tool_input, cfg=cfg, idempotency_key=f"bench/{i}")
                times.append((time.perf_counter() - start) * 1000)
                assert outcome.status == "ok", outcome
            out[tool] = times
    finally:
        pool.close()
    return out


AGENTLOG = str(Path(sys.executable).with_name("agentlog"))


def bench_stack(**extra: str) -> tuple[dict[str, str], Settings]:
    """The environment and settings of a stack of its own: a fresh home, free ports, no
    AGENTLOG_* or OTEL_* variable of the caller's, and `extra`."""
    home = Path(tempfile.mkdtemp(prefix="agentlog-bench-"))
    kafka, controller, gateway, query, smtp, metrics, memory = free_ports(7)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENTLOG_", "OTEL_"))},
           "AGENTLOG_HOME": str(home), "AGENTLOG_KAFKA_PORT": str(kafka),
           "AGENTLOG_CONTROLLER_PORT": str(controller), "AGENTLOG_GATEWAY_PORT": str(gateway),
           "AGENTLOG_QUERY_PORT": str(query), "AGENTLOG_SMTP_PORT": str(smtp),
           "AGENTLOG_METRICS_PORT": str(metrics), "AGENTLOG_MEMORY_PORT": str(memory), **extra}
    return env, Settings(home=home, kafka_port=kafka, controller_port=controller, gateway_port=gateway,
                         query_port=query, smtp_port=smtp, metrics_port=metrics)


def stack_pids(agentlog: str, env: dict[str, str]) -> dict[str, int]:
    """The pid of the broker and of every service of the stack `env` names."""
    status = json.loads(subprocess.run([agentlog, "status", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    return {"kafka": status["kafka"]["pid"], **{name: s["pid"] for name, s in status["services"].items()}}


def warm_burst(settings: Settings, pids: dict[str, int], *, warmup: int,
               runs: int) -> tuple[float, dict[str, list[Event]], dict[str, float]]:
    """`warmup` runs, then a burst of `runs`: its seconds, its runs' events and the CPU seconds
    each process spent on it."""
    run_load(settings, runs=warmup)
    before = cpu_seconds(pids)
    elapsed, events = run_load(settings, runs=runs)
    return elapsed, events, {k: v - before[k] for k, v in cpu_seconds(pids).items()}


def measure(opts: argparse.Namespace, sandbox: str) -> dict[str, float]:
    """One stack with `sandbox` as its executor's sandbox: warm-up, burst, steady load; printed."""
    env, settings = bench_stack(AGENTLOG_SANDBOX=sandbox)
    agentlog = AGENTLOG
    subprocess.run([agentlog, "up"], env=env, check=True, capture_output=True)
    try:
        elapsed, burst, cpu = warm_burst(settings, stack_pids(agentlog, env), warmup=opts.warmup,
                                         runs=opts.runs)
        capacity = opts.runs / elapsed
        rate = opts.rate or max(1.0, round(capacity / 2))
        paced_elapsed, paced = run_load(settings, runs=opts.runs, rate=rate)
        sizes = [len(make_codec(settings).encode(e)) for evs in burst.values() for e in evs]
        rtt = baseline_rtt(settings, n=opts.rtt, size=int(statistics.mean(sizes)))
    finally:
        subprocess.run([agentlog, "down"], env=env, check=False, capture_output=True)
    tool_ms = [float(e.payload.duration_ms) for evs in burst.values() for e in evs
               if isinstance(e.payload, ToolExecuted)]
    print(f"\n=== sandbox: {sandbox} ===")
    print(f"runtime benchmark · {os.cpu_count()} CPU(s) · {opts.runs} runs per load "
          f"({sum(len(e) for e in burst.values())} events, mean event {statistics.mean(sizes):.0f} B)")
    print(f"\nburst: {capacity:.1f} runs/s ({elapsed:.1f} s for {opts.runs} runs submitted at once)")
    print("CPU ms per run, by process: " + ", ".join(
        f"{k} {v * 1000 / opts.runs:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    print(f"  in all {sum(cpu.values()) * 1000 / opts.runs:.1f} CPU ms per run "
          f"({sum(cpu.values()) / elapsed:.2f} cores busy during the burst)")
    print(f"tool call in its sandbox (ToolExecuted.duration_ms): p50 {_pct(tool_ms, .5):.0f} ms, "
          f"p99 {_pct(tool_ms, .99):.0f} ms")
    hop_table(burst)
    print(f"\nsteady: {rate:g} runs/s offered, {opts.runs / paced_elapsed:.1f} runs/s done "
          f"({paced_elapsed:.1f} s)")
    every = hop_table(paced)
    print(f"{'baseline: bare produce → consume round trip':<44}{len(rtt):>6}"
          f"{_pct(rtt, .5):>9.2f}{_pct(rtt, .99):>9.2f}")
    print(f"ratio steady hops / baseline: p50 {_pct(every, .5) / _pct(rtt, .5):.1f}x, "
          f"p99 {_pct(every, .99) / _pct(rtt, .99):.1f}x  (event_time has millisecond resolution)")
    return {"burst": capacity, "executor_cpu_ms": cpu["executor"] * 1000 / opts.runs,
            "hop_p50": _pct(every, .5), "hop_p99": _pct(every, .99)}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=300)
    args.add_argument("--rate", type=float, default=None,
                      help="runs/s of the steady load (default: half the burst's capacity)")
    args.add_argument("--rtt", type=int, default=2000)
    args.add_argument("--warmup", type=int, default=200,
                      help="runs before measuring: groups joined, caches filled, the broker's JIT warm")
    args.add_argument("--sandbox", default="process,enforced",
                      help="the executor's sandboxes to measure one after the other, each on its own stack "
                           "(process: the plain child; enforced: bubblewrap boxes)")
    args.add_argument("--calls", type=int, default=1000,
                      help="calls per tool of the direct per-call comparison of the sandboxes")
    opts = args.parse_args()
    modes = [m.strip() for m in opts.sandbox.split(",") if m.strip()]
    results = {mode: measure(opts, mode) for mode in modes}
    if len(modes) < 2:
        return
    base, *others = modes
    print(f"\n=== {' vs '.join(modes)} (the first is the baseline) ===")
    for mode in others:
        r, b = results[mode], results[base]
        print(f"{mode}: burst {r['burst']:.1f} vs {b['burst']:.1f} runs/s ({r['burst'] / b['burst']:.2f}x), "
              f"executor CPU {r['executor_cpu_ms']:.2f} vs {b['executor_cpu_ms']:.2f} ms per run, "
              f"steady hops p50 {r['hop_p50']:.0f} vs {b['hop_p50']:.0f} ms, p99 {r['hop_p99']:.0f} vs "
              f"{b['hop_p99']:.0f} ms")
    calls = {mode: sandbox_calls(mode, calls=opts.calls) for mode in modes}
    print(f"per call through the sandbox pool, {opts.calls} calls per tool, one warm child:")
    for tool in calls[base]:
        p50 = {mode: _pct(calls[mode][tool], .5) for mode in modes}
        line = ", ".join(f"{mode} p50 {p50[mode]:.3f} ms p99 {_pct(calls[mode][tool], .99):.3f} ms"
                         for mode in modes)
        overhead = ", ".join(f"{mode} +{(p50[mode] - p50[base]) * 1000:.0f} µs" for mode in others)
        print(f"  {tool}: {line}; per-call overhead at p50: {overhead}")


if __name__ == "__main__":
    main()
