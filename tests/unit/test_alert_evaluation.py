"""The pure alert decisions: what events count in which scope, when each rule's condition holds,
and when that raises or resolves an alert (once per rule, scope and window)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from policies.alert_rules import CostRiseRule, ViolationRateRule
from processors.alerting import (
    Counts,
    RunTrack,
    Track,
    Verdict,
    cost_verdict,
    decide,
    gate_verdict,
    run_facts,
    violation_verdict,
    window_of,
)
from schemas.alerts import AlertRaised, AlertResolved, GateVerdict, alert_id
from schemas.events import RunCancelled, RunCompleted, RunFailed, RunStarted, ToolProposed, ToolRejected
from tests.factories import METRICS, T0, envelope

PAGE = ViolationRateRule(name="page", min_runs=10, min_baseline_runs=20)
WARN = CostRiseRule(name="warn", min_runs=5)


def _run(*payloads, route="support"):
    track, facts = None, []
    for seq, p in enumerate([RunStarted(text="t", route=route, idempotency_key="k"), *payloads], 1):
        track, more = run_facts(envelope(p, seq=seq, at=T0 + timedelta(seconds=seq)), track)
        facts += more
    return track, facts


def _sum(facts, scope):
    total = Counts()
    for f in facts:
        if f.scope == scope:
            total += f.counts
    return total


def test_a_denied_run_counts_a_violation_its_cost_and_no_success_in_tenant_and_route():
    rejected = ToolRejected(step_id="s1", tool="query_sql", reason="drop", policy_version="v")
    proposed = ToolProposed(step_id="s1", tool="query_sql", input_json="{}", objective="o",
                            idempotency_key="k", run_metrics=METRICS)
    track, facts = _run(proposed, rejected, RunCompleted(outcome="refused", tool_calls=0, cost_usd=0.002,
                                                         duration_ms=5))
    assert track is None  # the run ended: nothing of it stays
    for scope in ("tenant:acme", "route:support"):
        assert _sum(facts, scope) == Counts(runs=1, violations=1, ended=1, successes=0, cost_usd=0.002)


def test_success_failure_and_cancellation_all_cost():
    _, ok = _run(RunCompleted(outcome="answered", tool_calls=1, cost_usd=0.001, duration_ms=5))
    _, failed = _run(RunFailed(stage="tool", reason="x", cost_usd=0.003))
    _, cancelled = _run(RunCancelled(reason="user", cost_usd=0.004))
    assert _sum(ok, "tenant:acme") == Counts(runs=1, ended=1, successes=1, cost_usd=0.001)
    assert _sum(failed + cancelled, "tenant:acme") == Counts(runs=2, ended=2, successes=0, cost_usd=0.007)


def test_a_run_whose_start_was_not_seen_still_counts_for_its_tenant():
    failed = envelope(RunFailed(stage="x", reason="y", cost_usd=1.0), seq=9)
    track, facts = run_facts(failed, RunTrack("acme", None))
    assert track is None and [f.scope for f in facts] == ["tenant:acme"]


def test_the_violation_rate_pages_above_three_times_the_baseline_once_there_are_enough_runs():
    baseline = Counts(runs=100, violations=5)  # 5 per 100
    assert violation_verdict(PAGE, current=Counts(runs=9, violations=9), baseline=baseline).breach is None
    thin = Counts(runs=19)
    assert violation_verdict(PAGE, current=Counts(runs=50, violations=20), baseline=thin).breach is None
    high = violation_verdict(PAGE, current=Counts(runs=20, violations=4), baseline=baseline)
    assert high.breach is True and (high.value, high.threshold, high.baseline) == (20.0, 15.0, 5.0)
    assert violation_verdict(PAGE, current=Counts(runs=20, violations=3), baseline=baseline).breach is False


def test_one_denial_against_a_clean_baseline_is_not_a_page():
    clean = Counts(runs=500)
    assert violation_verdict(PAGE, current=Counts(runs=20, violations=1), baseline=clean).breach is False
    assert violation_verdict(PAGE, current=Counts(runs=20, violations=3), baseline=clean).breach is False
    assert violation_verdict(PAGE, current=Counts(runs=20, violations=4), baseline=clean).breach is True


def test_cost_per_success_warns_on_a_rise_of_more_than_30_percent():
    yesterday = Counts(ended=10, successes=10, cost_usd=1.0)  # $0.10 per success
    same_cost_fewer_successes = Counts(ended=10, successes=7, cost_usd=1.0)  # $0.143: +43 %
    v = cost_verdict(WARN, current=same_cost_fewer_successes, previous=yesterday)
    assert v.breach is True and v.baseline == 0.1 and v.threshold == 0.13
    def breach(current):
        return cost_verdict(WARN, current=current, previous=yesterday).breach

    assert breach(Counts(ended=10, successes=8, cost_usd=1.0)) is False  # +25 %
    assert breach(Counts(ended=4, successes=1, cost_usd=9)) is None  # too few runs
    assert breach(Counts(ended=10, successes=0, cost_usd=9)) is None  # no cost per success


def _decide(track, breach, window_start, rule="page"):
    window = window_of(window_start.timestamp(), 60)
    return decide(rule=rule, severity="page", scope="tenant:acme", track=track,
                  verdict=Verdict(breach, value=1.0, runs=20, summary="s"), window=window, at=window[0])


def test_raise_once_then_resolve_with_the_same_id():
    w1, w2 = T0, T0 + timedelta(minutes=1)
    track, raised = _decide(Track(), True, w1)
    assert isinstance(raised.body, AlertRaised) and raised.alert_id == alert_id("page", "tenant:acme", w1)
    assert _decide(track, True, w1) == (track, None)  # still firing: nothing new
    assert _decide(track, True, w2) == (track, None)
    assert _decide(track, None, w2) == (track, None)  # too few runs to say
    track, resolved = _decide(track, False, w2)
    assert isinstance(resolved.body, AlertResolved) and resolved.alert_id == raised.alert_id
    assert resolved.window_start == w1 and resolved.body.resolved_window_start == w2
    assert not track.firing


def test_a_window_raises_one_alert_at_most_and_a_later_window_a_new_one():
    w1, w2 = T0, T0 + timedelta(minutes=1)
    track, first = _decide(Track(), True, w1)
    track, _ = _decide(track, False, w1)
    assert _decide(track, True, w1)[1] is None  # the same (rule, scope, window): the same alert
    track, second = _decide(track, True, w2)
    assert second.alert_id != first.alert_id and track.firing


def test_the_same_inputs_give_the_same_alert_whoever_decides():
    assert _decide(Track(), True, T0) == _decide(Track.from_dict(Track().to_dict()), True, T0)


def test_a_failed_gate_blocks_and_a_pass_resolves():
    at = datetime(2026, 12, 1, tzinfo=UTC)
    failed = gate_verdict(GateVerdict(verdict_id="v", candidate="c", passed=False, at=at,
                                      failed_checks=["quality: 0.5 (>= 0.8)"], scores="s"))
    assert failed.breach is True and "quality: 0.5" in failed.summary
    assert gate_verdict(GateVerdict(verdict_id="w", candidate="c", passed=True, at=at, failed_checks=[],
                                    scores="s")).breach is False


def test_windows_align_on_the_epoch():
    start, end = window_of(T0.timestamp() + 3, 60)
    assert start == T0 and end == T0 + timedelta(minutes=1)


def test_the_alert_core_imports_no_io_library():
    code = ("import sys, json\n"
            "import processors.alerting, policies.alert_rules, schemas.alerts, schemas.alert_codec\n"
            "io = ('confluent_kafka', 'faust', 'aiokafka', 'clickhouse_connect', 'httpx')\n"
            "print(json.dumps([m for m in io if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
