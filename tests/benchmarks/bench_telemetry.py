"""What spans cost: `bench_runtime`'s burst with telemetry off, exporting to a real collector, and
exporting to a collector that is down or hangs, in the same run on the same stack.

    .venv/bin/python -m tests.benchmarks.bench_telemetry [--runs 300] [--warmup 100] [--rounds 2]

Each round starts a fresh stack (new home, free ports) for each mode, in an order that rotates
from round to round, with the standard variables set for it; warms it with `--warmup` runs, then
times a burst of `--runs` runs submitted at once (runs/s until the last one ends) and the CPU
seconds the stack's processes spent on it.
For each mode the best round is reported, beside "off" as the baseline (ratio on/off). "down" is
an endpoint nothing listens on (connections refused); "hang" is a server that accepts and never
answers (every export waits for its timeout). Needs `make collector`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.benchmarks.bench_runtime import AGENTLOG, bench_stack, stack_pids, warm_burst
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


def one_burst(opts: argparse.Namespace, **otel: str) -> tuple[float, float, dict[str, float]]:
    """A fresh stack with `otel` in its environment: warm-up, then the timed burst; its runs/s,
    CPU ms per run, and CPU ms per run of each process."""
    env, settings = bench_stack(**otel)
    subprocess.run([AGENTLOG, "up"], env=env, check=True, capture_output=True)
    try:
        elapsed, _events, spent = warm_burst(settings, stack_pids(AGENTLOG, env), warmup=opts.warmup,
                                             runs=opts.runs)
    finally:
        subprocess.run([AGENTLOG, "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(settings.home, ignore_errors=True)
    return (opts.runs / elapsed, sum(spent.values()) * 1000 / opts.runs,
            {name: seconds * 1000 / opts.runs for name, seconds in spent.items()})


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=300)
    args.add_argument("--warmup", type=int, default=100)
    args.add_argument("--rounds", type=int, default=2)
    opts = args.parse_args()
    (refused,) = free_ports(1)
    hang_port, hang_server = _silent_server()
    results: dict[str, list[tuple[float, float, dict[str, float]]]] = {m: [] for m in MODES}
    with running_collector(Path(tempfile.mkdtemp(prefix="agentlog-bench-otel-"))) as collector:
        endpoints = {"on": collector.http_endpoint, "down": f"http://127.0.0.1:{refused}",
                     "hang": f"http://127.0.0.1:{hang_port}"}
        for n in range(opts.rounds):
            # Each round in another order, each burst on a fresh stack: neither the order nor the
            # history a stack holds favours one mode.
            for mode in MODES[n % len(MODES):] + MODES[:n % len(MODES)]:
                otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoints[mode]} if mode in endpoints else {}
                rate, cpu, per_process = one_burst(opts, **otel)
                results[mode].append((rate, cpu, per_process))
                print(f"  round {n + 1} {mode:<5} {rate:7.1f} runs/s  {cpu:6.1f} CPU ms/run", flush=True)
        received = len(collector.spans())
    hang_server.close()
    best = {m: max(results[m], key=lambda r: r[0]) for m in MODES}
    off_rate, off_cpu, off_processes = best["off"]
    print(f"\ntelemetry benchmark · {os.cpu_count()} CPU(s) · burst of {opts.runs} runs · best of "
          f"{opts.rounds} round(s) per mode")
    print(f"{'mode':<38}{'runs/s':>9}{'vs off':>9}{'CPU ms/run':>12}{'vs off':>9}")
    labels = {"off": "off (baseline)", "on": "on, to a real collector",
              "down": "on, collector down (refused)", "hang": "on, collector hangs (no answer)"}
    for mode in MODES:
        rate, cpu, _ = best[mode]
        print(f"{labels[mode]:<38}{rate:>9.1f}{rate / off_rate:>9.3f}{cpu:>12.1f}{cpu / off_cpu:>9.3f}")
    print("\nCPU ms per run by process, in those rounds:")
    names = sorted(off_processes, key=lambda n: -off_processes[n])
    print(f"{'process':<14}" + "".join(f"{m:>9}" for m in MODES))
    for name in names:
        print(f"{name:<14}" + "".join(f"{best[m][2].get(name, 0.0):>9.2f}" for m in MODES))
    print(f"spans the collector received in all: {received}")
    print("aim: telemetry on costs ≤ 5 % of the burst's runs/s (ratio ≥ 0.95), and no more when the "
          "collector is down or hangs")


if __name__ == "__main__":
    main()
