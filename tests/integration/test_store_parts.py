"""The store after a kill between an insert and its materialized views' inserts.

A view's insert follows the table's: a process killed between them leaves rows in `agent_events`
that no view saw. The sink's resume point and a run read's tenant must come from the table
itself, and the views (the approval queue, the facts of each run) must be repaired when the
sink starts. Real chDB; the kill is
simulated by inserting while the views are detached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from schemas.events import Event, RunCompleted, ToolRejected
from sinks.clickhouse import ClickHouseStore, EventRow, event_row
from sinks.metrics import metrics_query
from tests.factories import T0, a_run, envelope

TOPIC = "agentlog.events"


@contextmanager
def opened(path: Path) -> Iterator[ClickHouseStore]:
    """The store at `path`, closed afterwards (chDB serves one path per process at a time)."""
    store = ClickHouseStore.connect(url=None, chdb_path=str(path))
    try:
        yield store
    finally:
        store.close()


def _rows(events: list[Event], partition: int, first_offset: int) -> list[EventRow]:
    return [event_row(e, topic=TOPIC, partition=partition, offset=first_offset + i)
            for i, e in enumerate(events)]


@contextmanager
def views_lost(store: ClickHouseStore) -> Iterator[None]:
    """Inserts inside the block land in agent_events and in none of the views (the kill)."""
    views = [v for (v,) in store._client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine = 'MaterializedView'").result_rows]
    assert views
    for view in views:
        store._client.command(f"DETACH TABLE {view}")
    try:
        yield
    finally:
        for view in views:
            store._client.command(f"ATTACH TABLE {view}")


def _waiting(store: ClickHouseStore) -> list[str]:
    return sorted(r["run_id"] for r in store.waiting_approvals(TOPIC)[1])


def test_rows_no_view_saw_still_count_for_offsets_tenants_and_approvals(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    with opened(path) as store:
        store.insert_events(_rows(a_run("run-a"), partition=3, first_offset=10), token="t1")
        assert store.stored_offsets(TOPIC) == {3: 17}
        run_b = [e.model_copy(update={"tenant_id": "globex"}) for e in a_run("run-b")]
        with views_lost(store):
            store.insert_events(_rows(run_b, partition=3, first_offset=18), token="t2")

    with opened(path) as store:  # the sink starts again on the same store
        assert store.stored_offsets(TOPIC) == {3: 25}, "the sink would insert offsets 18-25 twice"
        read = store.stored_run(TOPIC, "run-b")
        assert [r["seq"] for r in read.rows] == list(range(1, 9)), "a read by run id alone finds its tenant"
        assert store.stored_run(TOPIC, "run-b", tenant_id="acme").rows == [], "another tenant's run"
        assert _waiting(store) == ["run-a"]
        store.repair_views()
        assert _waiting(store) == ["run-a", "run-b"]
        store.repair_views()  # a repeat changes nothing
        assert len(store.waiting_approvals(TOPIC)[1]) == 2


def test_a_table_made_before_the_projections_gets_them_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    with opened(path) as store:
        for name in ("offsets", "runs"):
            store._client.command(f"ALTER TABLE agent_events DROP PROJECTION {name}")
        store._client.command("ALTER TABLE agent_events DROP INDEX inserted")
        store.insert_events(_rows(a_run("run-c"), partition=0, first_offset=0), token="old")

    with opened(path) as store:
        made = str(store._client.command("SHOW CREATE TABLE agent_events"))
        assert "PROJECTION offsets" in made and "PROJECTION runs" in made and "INDEX inserted" in made
        parts = store._client.query("SELECT projections FROM system.parts "
                                    "WHERE table = 'agent_events' AND active").result_rows
        assert parts and all(sorted(p) == ["offsets", "runs"] for (p,) in parts)
        assert store.stored_offsets(TOPIC) == {0: 7}
        assert [r["seq"] for r in store.stored_run(TOPIC, "run-c").rows] == list(range(1, 9))


def _metrics(store: ClickHouseStore) -> list[dict[str, Any]]:
    query = metrics_query(by=["tenant"])
    return store.query(query.sql, parameters=query.parameters).as_dicts()


def test_the_facts_of_runs_no_view_saw_are_repaired_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    run_a = a_run("run-a")  # planned, one call approved after 3 s, one waiting for a person
    ends = [envelope(ToolRejected(step_id="s2", tool="send_email", reason="rejected by ana",
                                  policy_version="v1", rejected_by="ana"), run_id="run-a", seq=9,
                     at=T0 + timedelta(seconds=9)),
            envelope(RunCompleted(outcome="partial", tool_calls=1, cost_usd=0.04, duration_ms=10_000),
                     run_id="run-a", seq=10, at=T0 + timedelta(seconds=10))]
    run_b = [e.model_copy(update={"tenant_id": "globex"}) for e in a_run("run-b")][:2]
    run_b.append(envelope(RunCompleted(outcome="answered", tool_calls=0, cost_usd=0.01, duration_ms=2000),
                          run_id="run-b", seq=3, at=T0 + timedelta(seconds=3)))
    run_b = [e.model_copy(update={"tenant_id": "globex"}) for e in run_b]
    with opened(path) as store:
        store.insert_events(_rows(run_a, partition=0, first_offset=0), token="t1")
        with views_lost(store):  # the end of run-a, and all of run-b
            store.insert_events(_rows(ends, partition=0, first_offset=8)
                                + _rows(run_b, partition=1, first_offset=0), token="t2")
        lost = {r["tenant"]: r for r in _metrics(store)}
        assert set(lost) == {"acme"} and lost["acme"]["successes"] == 0, "the views did miss the batch"

    expected = [
        {"tenant": "acme", "runs": 1, "successes": 0, "success_rate": 0.0, "violations": 2,
         "violation_rate_per_100": 200.0, "cost_usd": 0.04, "cost_per_success_usd": None,
         "ttfa_p50_ms": 3000.0, "ttfa_p95_ms": 3000.0},
        {"tenant": "globex", "runs": 1, "successes": 1, "success_rate": 1.0, "violations": 0,
         "violation_rate_per_100": 0.0, "cost_usd": 0.01, "cost_per_success_usd": 0.01,
         "ttfa_p50_ms": None, "ttfa_p95_ms": None},
    ]
    with opened(path) as store:  # the sink starts again, and repairs every view
        store.repair_views()
        assert _metrics(store) == expected
        store.repair_views()
        store.insert_events(_rows(ends, partition=0, first_offset=8), token="t3")  # stored twice
        assert _metrics(store) == expected, "a repeat changes no run's facts"
        store._client.command("OPTIMIZE TABLE run_facts FINAL")
        assert _metrics(store) == expected, "merged into one row per run, the same facts"
        assert store.query("SELECT count() FROM run_facts").rows == [[2]]


def test_opening_a_store_that_has_its_projections_rewrites_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    with opened(path) as store:
        store.insert_events(_rows(a_run("run-d"), partition=1, first_offset=0), token="d")
    for _ in range(2):  # every start of the sink, every command on a stopped stack
        with opened(path) as store:
            mutations = store._client.query(
                "SELECT count() FROM system.mutations WHERE table = 'agent_events'").result_rows[0][0]
            assert mutations == 0, "an open rebuilt agent_events' projections or index"
            assert store.stored_offsets(TOPIC) == {1: 7}
