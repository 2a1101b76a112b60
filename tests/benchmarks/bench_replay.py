"""Exact replay throughput over ≥10,000 recorded runs, beside decoding the same events alone.

    .venv/bin/python -m tests.benchmarks.bench_replay [--runs 10000] [--seed 7] [--repeat 3]

The runs are recorded by the pure core itself, as the stack would record them: today's
orchestrator, the scripted planner, the default policy and the responder, with tool outputs and
people's decisions made up by a seeded synthetic world. The dataset is written as JSONL (the
format `agentlog export` writes) to a temporary file, then timed three ways:

- decode: JSONL lines to events, nothing else (and, for comparison, the same events from their
  Avro encoding, as they are read from the topic);
- check: exact replay of runs already decoded (`check_run`), in this process;
- end to end: decode and check, line by line, as `agentlog replay --check` does: in this
  process, and spread over the machine's cores (`--workers`, the CLI's default for big datasets).

Each timing is the best of `--repeat` rounds. The processors are those the CLI builds: today's
policy and tool contracts, memoized (`processors/replay/memo.py`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policies import DEFAULT_POLICY_PATH, load_policy
from processors.models import ModelsConfig
from processors.orchestrator import OrchestratorConfig
from processors.planner_scripted import SAMPLE_REQUESTS, ScriptedPlanner
from processors.replay import (
    Candidate,
    Processors,
    RecordedRun,
    check_run,
    parse_line,
    simulate,
)
from processors.tools.registry import default_registry
from schemas.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    ResponseFinalized,
    RunStarted,
    ToolExecuted,
)

__all__ = ["SyntheticWorld", "today", "synthetic_run", "synthetic_runs", "main"]

_RUN_NS = uuid.UUID("9d8a53a4-6a43-4cf0-9a0e-1f4f1c2b7e55")
T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
TENANTS = ["acme", "globex", "initech"]
REQUESTS = [
    *SAMPLE_REQUESTS.values(),
    "What are the API rate limits?",
    "How many orders were paid last month?",
    "Open a ticket about the broken invoice export and e-mail ops@yourcompany.com about it.",
    "Email bob@yourcompany.com the count of customers in France.",
    "Delete all orders from 2019.",
    "What is the on-call escalation process?",
    ("Hi. How many customers are on the enterprise plan? Then open a low-priority ticket: "
     "review the enterprise pricing."),
    "Send an email to partner@supplier.io saying the shipment is late.",
]


def today(policy_path: Path = DEFAULT_POLICY_PATH) -> Processors:
    """The stack's configuration as shipped: default policy, tools, scripted planner."""
    registry = default_registry()
    return Processors(
        policy=load_policy(policy_path, registry=registry), registry=registry,
        models=ModelsConfig.model_validate({
            "providers": {"scripted": {"kind": "scripted"}},
            "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0}},
            "routes": {"default": {"planner": {"provider": "scripted", "model": "scripted-v1"}}}}),
        orchestrator=OrchestratorConfig(tool_costs={t.name: t.cost_usd for t in registry}))


class SyntheticWorld:
    """Answers every tool call with a plausible output, and a person decides every parked call
    (granted, or denied one time in `deny_one_in`)."""

    planner_refusal: Event | None = None
    cancellation: Event | None = None

    def __init__(self, rng: random.Random, *, deny_one_in: int = 4) -> None:
        self._rng = rng
        self._deny_one_in = deny_one_in

    def observation(self, tool: str, input_json: str) -> ToolExecuted:
        n = self._rng.randint(1, 900)
        out: dict[str, object]
        if tool == "search_docs":
            out = {"hits": [{"doc": "refunds.md", "passage": f"Annual plans are refunded pro rata ({n})."}]}
        elif tool == "query_sql":
            out = {"columns": ["count(*)"], "rows": [[n]], "row_count": 1}
        elif tool == "create_ticket":
            out = {"ticket_id": f"T-{n}", "created": True, "priority": "normal"}
        else:
            out = {"recipients": [json.loads(input_json).get("to")], "message_id": f"<{n}@agentlog>"}
        cost = {"search_docs": 0.0005, "query_sql": 0.001}.get(tool, 0.002)
        return ToolExecuted(step_id="-", tool=tool, status="ok", output_json=json.dumps(out),
                            duration_ms=self._rng.randint(3, 400), cost_usd=cost)

    def decision(self, tool: str, input_json: str) -> None:
        return None

    def person(self, parked: ApprovalRequested) -> tuple[Event, timedelta]:
        deny = self._rng.randrange(self._deny_one_in) == 0
        payload = (ApprovalDenied if deny else ApprovalGranted)(
            step_id=parked.step_id, approver="alice", reason="checked with the customer")
        return Event.of(payload, run_id="-", seq=0, event_id="person", tenant_id="-",
                        event_time=T0, actor="human:alice"), timedelta(seconds=self._rng.randint(5, 900))

    def finalized(self, draft: str) -> ResponseFinalized | None:
        return None

    def cancelled_by(self, now: datetime) -> Event | None:
        return None

    def timeout(self, request_type: str, attempt: int) -> Event | None:
        return None  # every worker answers in time


def synthetic_run(n: int, rng: random.Random, processors: Processors) -> RecordedRun:
    """Run number `n`, recorded by driving the pure core through a whole run."""
    tenant = TENANTS[n % len(TENANTS)]
    key = f"bench-{n}"
    run_id = str(uuid.uuid5(_RUN_NS, f"{tenant}/{key}"))
    started = Event.of(
        RunStarted(text=REQUESTS[n % len(REQUESTS)], route="default", idempotency_key=key),
        run_id=run_id, seq=1, event_id="-", causation_id=f"request-{n}", tenant_id=tenant,
        event_time=T0 + timedelta(seconds=n * 7), actor="orchestrator")
    sim = simulate(RecordedRun(run_id, tenant, (started,)),
                   candidate=Candidate(name="record", processors=processors,
                                       planners={"default": ScriptedPlanner()}, writers={}),
                   baseline=processors, world=SyntheticWorld(rng))
    assert sim.stopped is None, sim.stopped
    return RecordedRun(run_id, tenant, tuple(sim.log))


def synthetic_runs(count: int, *, seed: int = 7) -> list[RecordedRun]:
    rng = random.Random(seed)
    processors = today()
    return [synthetic_run(n, rng, processors) for n in range(count)]


def _best(label: str, fn: Callable[[], int], repeat: int) -> tuple[str, int, float]:
    best = float("inf")
    events = 0
    for _ in range(repeat):
        gc.collect()
        begun = time.perf_counter()
        events = fn()
        best = min(best, time.perf_counter() - begun)
    return label, events, best


def main(argv: Sequence[str] | None = None) -> None:
    from schemas.codec import EventCodec
    from streams.replay_io import replay_lines, today_processors, write_dataset
    from streams.settings import REPO_ROOT, Settings

    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--runs", type=int, default=10_000)
    args.add_argument("--seed", type=int, default=7)
    args.add_argument("--repeat", type=int, default=3)
    args.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    opts = args.parse_args(argv)

    begun = time.perf_counter()
    runs = synthetic_runs(opts.runs, seed=opts.seed)
    recorded = time.perf_counter() - begun
    events = sum(len(r.events) for r in runs)
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="bench-replay-")),
                        policy_file=DEFAULT_POLICY_PATH,
                        models_file=REPO_ROOT / "processors" / "models" / "models.yaml")
    procs = today_processors(settings)
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", encoding="utf-8") as handle:
        write_dataset(runs, handle)
        handle.flush()
        lines = Path(handle.name).read_text(encoding="utf-8").splitlines()
        size = Path(handle.name).stat().st_size
    codec = EventCodec()
    blobs = [codec.encode(e) for r in runs for e in r.events]
    diverged = [r.run_id for r in runs if check_run(r, processors=procs).diverged]

    def decode() -> int:
        return sum(len(run.events) for line in lines if (run := parse_line(line)) is not None)

    def decode_avro() -> int:
        for blob in blobs:
            codec.decode(blob)
        return len(blobs)

    def check() -> int:
        for run in runs:
            check_run(run, processors=procs)
        return events

    def end_to_end(workers: int) -> Callable[[], int]:
        def go() -> int:
            n = 0
            for result in replay_lines(lines, kind="check", settings=settings, workers=workers):
                n += result["events"]
            return n
        return go

    rows = [_best("decode JSONL lines to events", decode, opts.repeat),
            _best("decode the same events from Avro", decode_avro, opts.repeat),
            _best("exact replay of decoded runs (1 process)", check, opts.repeat),
            _best("decode + exact replay (1 process)", end_to_end(1), opts.repeat)]
    if opts.workers > 1:
        rows.append(_best(f"decode + exact replay ({opts.workers} processes)", end_to_end(opts.workers),
                          opts.repeat))
    print(f"exact replay benchmark · {platform.python_implementation()} {platform.python_version()} · "
          f"{platform.machine()} · {os.cpu_count()} CPU(s)")
    print(f"dataset: {len(runs):,} runs, {events:,} events ({events / len(runs):.1f} per run), "
          f"{size / 1e6:.1f} MB of JSONL; recorded in {recorded:.1f} s; "
          f"{len(diverged)} run(s) diverged")
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'events':>9}  {'seconds':>8}  {'events/s':>10}")
    for label, n, seconds in rows:
        print(f"{label:{width}}  {n:>9,}  {seconds:>8.3f}  {n / seconds:>10,.0f}")
    print(f"(best of {opts.repeat} rounds each)")


if __name__ == "__main__":
    main()
