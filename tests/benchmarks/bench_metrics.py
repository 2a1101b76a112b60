"""Metrics benchmark: `agentlog metrics --by tenant,route,model,day` over a large store, beside a
plain `count()` of the same table.

    .venv/bin/python -m tests.benchmarks.bench_metrics [--events 10000000] [--runs-per-insert 50000]
        [--repeat 5] [--keep]

A chDB store (`ClickHouseStore` in a temporary home, the schema and views the sink makes) gets
`--events` events of realistic runs, about 14 a run: ten kinds of run built from the real
payload models (answered with one to four tool calls, a finalizer model, denied SQL, e-mails
approved or rejected by a person, cancelled while parked, a rejected plan, a tenant over
budget), spread over 30 days, 10 tenants, 4 routes and 3 planner models. Each insert of
`--runs-per-insert` runs is one `INSERT … SELECT` that stamps a kind's template with the run's
ids, tenant, route, model, times and cost, so the rows go through `agent_events`' projections
and the `run_facts` view exactly as the sink's inserts do. Then, best of `--repeat`:

- `SELECT count() FROM agent_events` (the baseline the issue names);
- the query `agentlog metrics --by tenant,route,model,day` sends (`sinks.metrics.metrics_query`),
  on a read-only client of the store, as the sink's query endpoint runs it;
- the same metrics computed from `agent_events` alone (no facts view), to show what it saves;
- the whole command, `agentlog metrics --by tenant,route,model,day --json` in a new process on
  the store (Python start-up and opening chDB included; no sink runs, so it opens the path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BudgetExceeded,
    ModelCall,
    ObservationCaptured,
    PlanGenerated,
    PlanRejected,
    PlanStep,
    Record,
    ResponseDrafted,
    ResponseFinalized,
    ResponseRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunMetrics,
    RunStarted,
    ToolApproved,
    ToolExecuted,
    ToolProposed,
    ToolRejected,
)
from sinks.clickhouse import ClickHouseStore
from sinks.metrics import metrics_query
from tests.stack import AGENTLOG

__all__ = ["KINDS", "main"]

TENANTS, ROUTES, MODELS = 10, ("default", "support", "billing", "ops"), ("small-a", "small-b", "scripted-v1")
DAYS = 30
_COST = 0.123456  # stands for the run's cost in a template; each run gets its own
_CUT = 6  # a run's first events go in one insert, the rest in the next
_CALL = ModelCall(provider="openai_compatible", model="@model@", prompt_version="planner/v1",
                  input_tokens=900,
                  output_tokens=140, latency_ms=420, cost_usd=0.00037)
_WRITER = _CALL.model_copy(update={"model": "big-writer", "prompt_version": "finalizer/v1",
                                   "cost_usd": 0.0031})
_METRICS = RunMetrics(tool_calls=1, tickets_created=0, emails_sent=0, cost_usd=0.001)
_TOOLS = ("search_docs", "query_sql", "create_ticket", "send_email")


def _plan(n: int) -> PlanGenerated:
    steps = [PlanStep(id=f"s{i + 1}", objective="find what the user asked", tool=_TOOLS[i % 4],
                      input_json='{"query": "refund policy annual plans"}',
                      success_criteria="an answer is found")
             for i in range(n)]
    return PlanGenerated(max_steps=n, budget_usd=0.5, steps=steps, stop_conditions=["all steps done"],
                         plan_json=json.dumps({"steps": [s.model_dump() for s in steps]}), model_call=_CALL)


def _call(i: int, *, decision: str = "allow") -> list[tuple[Record, int]]:
    step, tool = f"s{i + 1}", _TOOLS[i % 4]
    proposed = ToolProposed(step_id=step, tool=tool, input_json='{"query": "refund"}', objective="find it",
                            route="@route@", idempotency_key=f"run/{step}", run_metrics=_METRICS)
    approved = ToolApproved(step_id=step, tool=tool, input_json='{"query": "refund"}',
                            idempotency_key=f"run/{step}", policy_version="sha256:ab12",
                            reason="no rule matched; the policy default is allow")
    out: list[tuple[Record, int]] = [(proposed, 2)]
    if decision == "deny":
        return [*out, (ToolRejected(step_id=step, tool=tool, rule="deny_destructive_sql", reason="drop",
                                    policy_version="sha256:ab12"), 60),
                (ObservationCaptured(step_id=step, tool=tool, status="denied", summary="blocked"), 1)]
    if decision in ("approve", "reject"):
        asked = ApprovalRequested(step_id=step, tool=tool, input_json="{}", rule="external_email",
                                  reason="external", policy_version="sha256:ab12",
                                  expires_at=datetime(2030, 1, 1, tzinfo=UTC))
        out.append((asked, 60))
        if decision == "reject":
            return [*out, (ApprovalDenied(step_id=step, approver="sec"), 240_000),
                    (ToolRejected(step_id=step, tool=tool, reason="rejected by sec",
                                  policy_version="sha256:ab12",
                                  rejected_by="sec"), 3),
                    (ObservationCaptured(step_id=step, tool=tool, status="denied", summary="rejected"), 1)]
        out += [(ApprovalGranted(step_id=step, approver="sec"), 180_000),
                (approved.model_copy(update={"approved_by": "sec"}), 3)]
    else:
        out.append((approved, 70))
    return [*out, (ToolExecuted(step_id=step, tool=tool, status="ok",
                                output_json='{"hits": [{"doc": "refunds"}]}',
                                duration_ms=180, cost_usd=0.001), 200),
            (ObservationCaptured(step_id=step, tool=tool, status="ok", summary="refunds: 30 days"), 1)]


def _answered(calls: list[list[tuple[Record, int]]], *, steps: int, writer: bool = False,
              outcome: str = "succeeded") -> list[tuple[Record, int]]:
    obs = ObservationCaptured(step_id="s1", tool="search_docs", status="ok", summary="refunds: 30 days")
    final = ResponseFinalized(text="Refunds: 30 days.", model_call=_WRITER if writer else None)
    return [(RunStarted(text="What is our refund policy?", route="@route@", idempotency_key="k"), 0),
            (_plan(steps), 450), *[e for c in calls for e in c],
            (ResponseRequested(request_text="refunds?", observations=[obs] * steps), 1),
            (ResponseDrafted(text="Done. Refunds: 30 days.", model_call=_CALL.model_copy(
                update={"model": "template", "cost_usd": 0.0})), 40), (final, 900 if writer else 30),
            (RunCompleted(outcome=outcome, tool_calls=steps, cost_usd=_COST, duration_ms=1500), 1)]


KINDS: list[tuple[str, int, list[tuple[Record, int]]]] = [
    ("one call", 16, _answered([_call(0)], steps=1)),
    ("two calls", 20, _answered([_call(0), _call(1)], steps=2)),
    ("three calls, finalizer", 20, _answered([_call(i) for i in range(3)], steps=3, writer=True)),
    ("four calls", 14, _answered([_call(i) for i in range(4)], steps=4)),
    ("denied SQL", 8, _answered([_call(1, decision="deny")], steps=1, outcome="refused")),
    ("e-mail approved", 8, _answered([_call(3, decision="approve")], steps=1)),
    ("e-mail rejected", 6, _answered([_call(3, decision="reject")], steps=1, outcome="refused")),
    ("cancelled while parked", 4, [(RunStarted(text="mail bob", route="@route@", idempotency_key="k"), 0),
                                   (_plan(1), 450), *_call(3, decision="approve")[:2],
                                   (RunCancelled(reason="wrong recipient", cost_usd=_COST), 90_000)]),
    ("plan rejected", 2, [(RunStarted(text="launch", route="@route@", idempotency_key="k"), 0),
                          (PlanRejected(errors=["not a tool"], raw_output="{}", model_call=_CALL), 500),
                          (ResponseFinalized(text="I could not make a safe plan."), 2),
                          (RunFailed(stage="planning", reason="plan rejected", cost_usd=_COST), 1)]),
    ("over budget", 2, [(RunStarted(text="count", route="@route@", idempotency_key="k"), 0),
                        (BudgetExceeded(limit="tenant_daily_usd", limit_value=5, spent=5.01,
                                        reason="over"), 20),
                        (ResponseFinalized(text="The daily budget is spent."), 2),
                        (RunFailed(stage="budget", reason="over budget", cost_usd=_COST), 1)]),
]
"""(name, weight in 100 runs, the events: payload and ms after the previous one)."""

_ACTORS = {"RunStarted": "orchestrator", "PlanGenerated": "planner", "PlanRejected": "planner",
           "ToolApproved": "policy_guard", "ToolRejected": "policy_guard",
           "ApprovalRequested": "policy_guard",
           "ToolExecuted": "tool_executor", "ResponseDrafted": "responder", "ResponseFinalized": "responder",
           "BudgetExceeded": "planner"}


def _templates(store: ClickHouseStore) -> float:
    """Store the kinds' events; the mean events per run, by the kinds' weights."""
    store._client.command("CREATE TABLE bench_template (kind UInt8, k UInt16, event_type String, "
                          "actor String, "
                          "payload String, at_ms UInt32) ENGINE = Memory")
    rows = []
    for kind, (_name, _w, events) in enumerate(KINDS):
        at = 0
        for k, (payload, after) in enumerate(events):
            at += after
            name = type(payload).__name__
            rows.append([kind, k, name, _ACTORS.get(name, "orchestrator"), payload.model_dump_json(), at])
    store._client.insert("bench_template", rows, column_names=["kind", "k", "event_type", "actor", "payload",
                                                               "at_ms"])
    return sum(w * len(e) for _n, w, e in KINDS) / sum(w for _n, w, _e in KINDS)


def _fill(store: ClickHouseStore, *, runs: int, per_insert: int, now: datetime) -> None:
    """`runs` runs, `per_insert` starting in each insert: an insert holds the first events of its
    runs and the rest of the previous insert's, as the sink's inserts cut runs that are going on
    (so each run has two partial rows in `run_facts` until the parts merge)."""
    slots = [kind for kind, (_n, w, _e) in enumerate(KINDS) for _ in range(w)]
    start = (now - timedelta(days=DAYS)).strftime("%Y-%m-%d %H:%M:%S")
    spacing_ms = DAYS * 86_400_000 // runs
    routes, models = list(ROUTES), list(MODELS)
    for first in range(0, runs + per_insert, per_insert):
        low, high = max(0, first - per_insert), min(runs, first + per_insert)
        if low >= high:
            break
        # One run per number: its kind by a hash, its ids from the number, its events the kind's.
        store._client.command(f"""
            INSERT INTO agent_events (tenant_id, run_id, seq, event_id, causation_id, event_type, actor,
                                      event_time, payload, source_topic, source_partition, source_offset)
            SELECT concat('tenant-', toString(bitShiftRight(h, 32) % {TENANTS})), rid, k + 1,
                   UUIDNumToString(MD5(concat(rid, '/', toString(k)))), NULL, t.event_type, t.actor,
                   toDateTime64('{start}', 3, 'UTC')
                       + toIntervalMillisecond(n * {spacing_ms} + intDiv(t.at_ms * (100 + h % 50), 100)),
                   replaceOne(replaceOne(replaceOne(t.payload,
                       '@route@', {routes}[1 + bitShiftRight(h, 8) % {len(routes)}]),
                       '@model@', {models}[1 + bitShiftRight(h, 16) % {len(models)}]),
                       '{_COST}', toString(round(0.0005 + bitShiftRight(h, 24) % 1000 / 100000, 6))),
                   'agentlog.events', toUInt32(n % 12), n * 32 + k
            FROM (SELECT number AS n, cityHash64(number) AS h, UUIDNumToString(MD5(toString(number))) AS rid,
                         {slots}[1 + h % 100] AS kind
                  FROM numbers({low}, {high - low})) AS r
            INNER JOIN bench_template AS t ON t.kind = r.kind
            WHERE (n >= {first} AND k < {_CUT}) OR (n < {first} AND k >= {_CUT})""")


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        begun = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - begun)
    return min(times), value


_RAW = """
SELECT tenant_id AS tenant, route, model, day, count() AS runs, countIf(success) AS successes,
       sum(v) AS violations, sum(cost) AS cost_usd,
       quantileExactInclusive(0.5)(ttfa) AS p50, quantileExactInclusive(0.95)(ttfa) AS p95
FROM (
    SELECT tenant_id, run_id,
        anyIf(JSONExtractString(payload, 'route'), event_type = 'RunStarted') AS route,
        argMinIf(JSONExtractString(payload, 'model_call', 'model'), seq,
                 event_type IN ('PlanGenerated', 'PlanRejected')) AS model,
        toString(toDate(minIf(event_time, event_type = 'RunStarted'))) AS day,
        countIf(event_type = 'RunCompleted') > 0 AND countIf(event_type IN ('PlanRejected', 'BudgetExceeded',
            'ToolRejected', 'ApprovalDenied', 'ApprovalExpired')) = 0 AS success,
        uniqExactIf(event_id, event_type IN ('ToolRejected', 'ApprovalRequested')) AS v,
        maxIf(JSONExtractFloat(payload, 'cost_usd'),
              event_type IN ('RunCompleted', 'RunFailed', 'RunCancelled')) AS cost,
        dateDiff('millisecond', minIf(event_time, event_type = 'RunStarted'),
                 minIfOrNull(event_time, event_type = 'ToolApproved')) AS ttfa
    FROM agent_events GROUP BY tenant_id, run_id)
GROUP BY tenant, route, model, day ORDER BY tenant, route, model, day"""


def main(argv: Sequence[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--events", type=int, default=10_000_000)
    args.add_argument("--runs-per-insert", type=int, default=50_000)
    args.add_argument("--repeat", type=int, default=5)
    args.add_argument("--keep", action="store_true", help="Keep the temporary home (its path is printed).")
    opts = args.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    store = ClickHouseStore.connect(url=None, chdb_path=str(home / "clickhouse"))
    try:
        per_run = _templates(store)
        runs = max(1, round(opts.events / per_run))
        begun = time.perf_counter()
        _fill(store, runs=runs, per_insert=opts.runs_per_insert, now=datetime.now(UTC))
        filled = time.perf_counter() - begun
        (events,), = store._client.query("SELECT count() FROM agent_events").result_rows
        facts_rows, facts_parts = store._client.query(
            "SELECT sum(rows), count() FROM system.parts WHERE table = 'run_facts' AND active").result_rows[0]
        print(f"store: {events:,} events of {runs:,} runs ({events / runs:.1f} a run), inserted in "
              f"{filled:.1f} s ({events / filled:,.0f} events/s, the run_facts view included); run_facts: "
              f"{facts_rows:,} rows in {facts_parts} parts; {_size(home)} on disk")
        reader = store.reader()
        query = metrics_query(by=("tenant", "route", "model", "day"))
        count_s, _ = _best(lambda: reader.query("SELECT count() FROM agent_events"), opts.repeat)
        metrics_s, rows = _best(lambda: reader.query(query.sql, parameters=query.parameters), opts.repeat)
        raw_s, raw = _best(lambda: reader.query(_RAW), max(1, opts.repeat // 2))
        assert _rounded([r[:8] for r in raw.rows]) == _rounded([[*r[:6], r[7], r[9]] for r in rows.rows]), \
            "the facts view and the events agree"
        reader.close()
    finally:
        store.close()
    env = {**os.environ, "AGENTLOG_HOME": str(home), "AGENTLOG_SETTINGS_FILE": str(home / "none.env")}
    cli_times = []
    for _ in range(opts.repeat):
        begun = time.perf_counter()
        out = subprocess.run([AGENTLOG, "metrics", "--by", "tenant,route,model,day", "--json"], env=env,
                             capture_output=True, text=True, check=True).stdout
        cli_times.append(time.perf_counter() - begun)
    assert len(json.loads(out)) == len(rows.rows)
    print(f"\n{'query':<62} {'best of ' + str(opts.repeat):>12}")
    print(f"{'SELECT count() FROM agent_events (baseline)':<62} {count_s * 1000:>9.1f} ms")
    print(f"{'agentlog metrics --by tenant,route,model,day: its query':<62} {metrics_s * 1000:>9.1f} ms"
          f"   {len(rows.rows):,} rows · aim ≤ 1 s: {'met' if metrics_s <= 1 else 'not met'}")
    print(f"{'the same from agent_events alone, no facts view':<62} {raw_s * 1000:>9.1f} ms")
    whole = "agentlog metrics … --json, the whole command (new process)"
    median = statistics.median(cli_times) * 1000
    print(f"{whole:<62} {min(cli_times) * 1000:>9.1f} ms   median {median:.0f} ms")
    if opts.keep:
        print(f"\nkept {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


def _rounded(rows: list[list[Any]]) -> list[list[Any]]:
    return [[round(v, 6) if isinstance(v, float) else v for v in row] for row in rows]


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{total / 1e9:.2f} GB"


if __name__ == "__main__":
    main()
