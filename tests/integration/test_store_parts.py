"""The store after a kill between an insert and its materialized views' inserts.

A view's insert follows the table's: a process killed between them leaves rows in `agent_events`
that no view saw. The sink's resume point and a run read's tenant must come from the table
itself, and the approval queue must be repaired when the sink starts. Real chDB; the kill is
simulated by inserting while the views are detached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.events import Event
from sinks.clickhouse import ClickHouseStore, EventRow, event_row
from tests.factories import a_run

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


def _waiting(store: ClickHouseStore) -> list[str]:
    return sorted(r["run_id"] for r in store.waiting_approvals(TOPIC)[1])


def test_rows_no_view_saw_still_count_for_offsets_tenants_and_approvals(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    with opened(path) as store:
        store.insert_events(_rows(a_run("run-a"), partition=3, first_offset=10), token="t1")
        assert store.stored_offsets(TOPIC) == {3: 17}
        # The kill: a batch lands in agent_events and none of the views sees it.
        views = [v for (v,) in store._client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() "
            "AND engine = 'MaterializedView'").result_rows]
        assert views
        for view in views:
            store._client.command(f"DETACH TABLE {view}")
        run_b = [e.model_copy(update={"tenant_id": "globex"}) for e in a_run("run-b")]
        store.insert_events(_rows(run_b, partition=3, first_offset=18), token="t2")
        for view in views:
            store._client.command(f"ATTACH TABLE {view}")

    with opened(path) as store:  # the sink starts again on the same store
        assert store.stored_offsets(TOPIC) == {3: 25}, "the sink would insert offsets 18-25 twice"
        read = store.stored_run(TOPIC, "run-b")
        assert [r["seq"] for r in read.rows] == list(range(1, 9)), "a read by run id alone finds its tenant"
        assert store.stored_run(TOPIC, "run-b", tenant_id="acme").rows == [], "another tenant's run"
        assert _waiting(store) == ["run-a"]
        store.repair_approvals()
        assert _waiting(store) == ["run-a", "run-b"]
        store.repair_approvals()  # a repeat changes nothing
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
