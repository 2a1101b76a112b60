"""What spans cost: `bench_runtime`'s burst with telemetry off, exporting to a real collector, and
exporting to a collector that is down or hangs, in the same run on the same stack.

    .venv/bin/python -m tests.benchmarks.bench_telemetry [--runs 300] [--warmup 100] [--rounds 2]

Each round starts the stack once per mode (in the order off, on, down, hang) with the standard
variables set for it, warms it with `--warmup` runs, then times a burst of `--runs` runs submitted
at once (runs/s until the last one ends) and the CPU seconds the stack's processes spent on it.
For each mode the best round is reported, beside "off" as the baseline (ratio on/off). "down" is
an endpoint nothing listens on (connections refused); "hang" is a server that accepts and never
answers (every export waits for its timeout). Needs `make collector`.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from streams.settings import Settings
from tests.benchmarks.bench_runtime import stack_pids, warm_burst
from tests.free_ports import free_ports
from tests.otel_collector import running_collector

MODES = ("off", "on", "down", "hang")


def _silent_server() -> tuple[int, socket.socket]:
    """A port that accepts connections and never answers them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], server


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=300)
    args.add_argument("--warmup", type=int, default=100)
    args.add_argument("--rounds", type=int, default=2)
    opts = args.parse_args()
    home = Path(tempfile.mkdtemp(prefix="agentlog-bench-telemetry-"))
    kafka, controller, gateway, query, smtp, metrics = free_ports(6)
    base = {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENTLOG_", "OTEL_"))},
            "AGENTLOG_HOME": str(home), "AGENTLOG_KAFKA_PORT": str(kafka),
            "AGENTLOG_CONTROLLER_PORT": str(controller), "AGENTLOG_GATEWAY_PORT": str(gateway),
            "AGENTLOG_QUERY_PORT": str(query), "AGENTLOG_SMTP_PORT": str(smtp),
            "AGENTLOG_METRICS_PORT": str(metrics)}
    settings = Settings(home=home, kafka_port=kafka, controller_port=controller,
                        gateway_port=gateway, query_port=query, smtp_port=smtp, metrics_port=metrics)
    agentlog = str(Path(sys.executable).with_name("agentlog"))
    (refused,) = free_ports(1)
    hang_port, hang_server = _silent_server()
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    with running_collector(home / "otel") as collector:
        endpoints = {"on": collector.http_endpoint, "down": f"http://127.0.0.1:{refused}",
                     "hang": f"http://127.0.0.1:{hang_port}"}
        for _round in range(opts.rounds):
            for mode in MODES:
                env = dict(base)
                if mode in endpoints:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoints[mode]
                subprocess.run([agentlog, "up"], env=env, check=True, capture_output=True)
                try:
                    elapsed, _events, spent = warm_burst(settings, stack_pids(agentlog, env),
                                                         warmup=opts.warmup, runs=opts.runs)
                    cpu = sum(spent.values())
                finally:
                    subprocess.run([agentlog, "down"], env=env, check=False, capture_output=True)
                results[mode].append((opts.runs / elapsed, cpu * 1000 / opts.runs))
                print(f"  round {_round + 1} {mode:<5} {opts.runs / elapsed:7.1f} runs/s  "
                      f"{cpu * 1000 / opts.runs:6.1f} CPU ms/run", flush=True)
        received = len(collector.spans())
    hang_server.close()
    best = {m: max(results[m]) for m in MODES}
    off_rate, off_cpu = best["off"]
    print(f"\ntelemetry benchmark · {os.cpu_count()} CPU(s) · burst of {opts.runs} runs · best of "
          f"{opts.rounds} round(s) per mode")
    print(f"{'mode':<38}{'runs/s':>9}{'vs off':>9}{'CPU ms/run':>12}{'vs off':>9}")
    labels = {"off": "off (baseline)", "on": "on, to a real collector",
              "down": "on, collector down (refused)", "hang": "on, collector hangs (no answer)"}
    for mode in MODES:
        rate, cpu = best[mode]
        print(f"{labels[mode]:<38}{rate:>9.1f}{rate / off_rate:>9.3f}{cpu:>12.1f}{cpu / off_cpu:>9.3f}")
    print(f"spans the collector received in all: {received}")
    print("aim: telemetry on costs ≤ 5 % of the burst's runs/s (ratio ≥ 0.95), and no more when the "
          "collector is down or hangs")


if __name__ == "__main__":
    main()
