"""The Grafana dashboard (infra/grafana/agentlog.json) checked without Grafana, which cannot be
installed here: every panel's SQL, its macros and variables replaced as the ClickHouse plugin
would, runs against a real chDB store holding a few runs, replays and alerts, and returns the
columns its panel shows."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import RunCompleted, ToolRejected
from sinks.alerts import insert_alerts
from sinks.clickhouse import ClickHouseStore, event_row
from streams.settings import REPO_ROOT
from tests.factories import T0, a_run, envelope

pytestmark = pytest.mark.integration

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "agentlog.json"
SINCE, UNTIL = "2026-11-20 00:00:00", "2026-12-03 00:00:00"

EXPECTED = {
    "Daily metrics by tenant, route and model": [
        "day", "tenant", "route", "model", "runs", "successes", "success_rate", "violations",
        "violation_rate_per_100", "cost_usd", "cost_per_success_usd", "ttfa_p50_ms", "ttfa_p95_ms"],
    "Success rate by route": ["time", "route", "success_rate"],
    "Violations per 100 runs by route": ["time", "route", "violation_rate_per_100"],
    "Cost per successful run by model": ["time", "model", "cost_per_success_usd"],
    "Time to first action (p50, p95)": ["time", "ttfa_p50_ms", "ttfa_p95_ms"],
    "Replay delta by candidate": ["time", "candidate", "replay_delta"],
    "Cost by tenant (hourly)": ["time", "tenant", "cost_usd"],
    "Policy violations by tenant (hourly)": ["time", "tenant", "violations"],
    "Open alerts": ["open_alerts"],
    "Alerts raised by severity (hourly)": ["time", "severity", "alerts"],
    "Alerts": ["at", "kind", "severity", "rule", "scope", "summary", "value", "threshold", "baseline",
               "runs"],
}
"""Per panel, the columns its SQL must return (what its fields and legends are built on)."""


def substituted(sql: str, *, tenants: list[str], routes: list[str]) -> str:
    """The SQL as Grafana sends it: `$__timeFilter(col)` over the dashboard's range, and the
    multi-value variables in their `singlequote` format."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 lambda m: f"{m[1]} >= toDateTime64('{SINCE}', 3, 'UTC') AND "
                           f"{m[1]} <= toDateTime64('{UNTIL}', 3, 'UTC')", sql)
    sql = sql.replace("${tenant:singlequote}", ",".join(f"'{t}'" for t in tenants))
    sql = sql.replace("${route:singlequote}", ",".join(f"'{r}'" for r in routes))
    assert "$" not in sql, f"a macro or variable the test does not know: {sql}"
    return sql


def _fill(store: ClickHouseStore) -> None:
    ended = [*a_run("run-ok")[:5], envelope(RunCompleted(outcome="succeeded", tool_calls=1, cost_usd=0.0125,
                                                         duration_ms=6000),
                                           run_id="run-ok", seq=6, at=T0 + timedelta(seconds=6))]
    denied = [*a_run("run-denied")[:3],
              envelope(ToolRejected(step_id="s1", tool="search_docs", rule="deny_destructive_sql",
                                    reason="destructive", policy_version="v1"),
                       run_id="run-denied", seq=4, at=T0 + timedelta(seconds=4)),
              envelope(RunCompleted(outcome="refused", tool_calls=0, cost_usd=0.002, duration_ms=4000),
                       run_id="run-denied", seq=5, at=T0 + timedelta(seconds=5))]
    waiting = [e.model_copy(update={"tenant_id": "globex"}) for e in a_run("run-waiting")]
    rows = [event_row(e, topic="agentlog.events", partition=0, offset=i)
            for i, e in enumerate([*ended, *denied, *waiting])]
    store.insert_events(rows, token="dashboard-1")
    store._client.insert("replay_scores", [("replay-1", "planner-v2", T0, "quality", 0.7, 0.8, 0.1, 4, "[]")],
                         column_names=["replay_id", "candidate", "scored_at", "metric", "baseline",
                                       "candidate_value", "delta", "runs", "scores"])
    alert = ("alert-1", "AlertRaised", "violation_spike", "page", "tenant:acme", T0, T0 + timedelta(days=1),
             T0 + timedelta(hours=1), "violations rose", 3.0, 1.0, 0.5, 2, "agentlog.alerts", 0, 0)
    insert_alerts(store._client, [alert], token="alerts-1")


def _panels() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 39
    return doc["panels"]


def test_the_dashboard_is_grafana_json_on_the_clickhouse_plugin():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] == "agentlog"
    names = {v["name"]: v for v in doc["templating"]["list"]}
    assert names["datasource"]["query"] == "grafana-clickhouse-datasource"
    panels = _panels()
    assert {p["title"] for p in panels} == set(EXPECTED)
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert p["datasource"]["type"] == "grafana-clickhouse-datasource", p["title"]
        assert all(t["datasource"]["type"] == "grafana-clickhouse-datasource" for t in p["targets"])
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])


def test_every_panels_sql_runs_on_chdb_and_returns_its_columns(tmp_path: Path):
    store = ClickHouseStore.connect(url=None, chdb_path=str(tmp_path / "clickhouse"))
    try:
        _fill(store)
        results: dict[str, list[tuple[Any, ...]]] = {}
        for p in _panels():
            for target in p["targets"]:
                sql = substituted(target["rawSql"], tenants=["acme", "globex"], routes=["support"])
                result = store._client.query(sql)
                assert list(result.column_names) == EXPECTED[p["title"]], p["title"]
                results[p["title"]] = result.result_rows
        for title, rows in results.items():
            assert rows, f"{title}: no rows from the runs, replays and alerts inserted"
        daily = {(r[1], r[2]): r for r in results["Daily metrics by tenant, route and model"]}
        acme = daily[("acme", "support")]
        assert acme[4:6] == (2, 1) and acme[7] == 1  # two runs, one success, one violation
        assert acme[9] == pytest.approx(0.0145)
        assert results["Open alerts"] == [(1,)]
        daily_sql = _panels()[0]["targets"][0]["rawSql"]
        only_globex = store._client.query(substituted(daily_sql, tenants=["globex"],
                                                      routes=["support"])).result_rows
        assert {r[1] for r in only_globex} == {"globex"}
    finally:
        store.close()
