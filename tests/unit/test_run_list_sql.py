"""The console's list queries without a store: a page is always the key's tenant's, filters reach
the query only as parameters, and a cursor is what a page gave or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sinks.alerts import ALERTS_SQL
from sinks.run_list import RUN_STATUSES, Cursor, runs_page_query, status_of, tenant_alerts_query


def test_a_cursor_comes_back_as_it_went_and_anything_else_is_refused() -> None:
    cursor = Cursor(datetime(2026, 12, 1, 9, 30, 1, 250000, tzinfo=UTC), "run|with a bar")
    assert Cursor.decode(cursor.encode()) == cursor
    later = Cursor(datetime(2026, 12, 1, 11, 30, 1, 250000, tzinfo=timezone(timedelta(hours=2))), "r")
    assert Cursor.decode(later.encode()).started == datetime(2026, 12, 1, 9, 30, 1, 250000, tzinfo=UTC)
    for garbage in ["", "not-a-cursor", "%%%", Cursor(datetime(2026, 1, 1, tzinfo=UTC), "x").encode()[:-3],
                    "MjAyNi0xMi0wMVQwOTozMDowMQ"]:  # a naive time and no run id
        with pytest.raises(ValueError, match="not a cursor this API gave"):
            Cursor.decode(garbage)


def test_a_page_is_the_tenants_whatever_is_asked_and_filters_are_parameters() -> None:
    hostile = "x' OR 1=1 --"
    query = runs_page_query(tenant_id=hostile, limit=25, status="completed", route=hostile, text=hostile,
                            before=Cursor(datetime(2026, 12, 1, tzinfo=UTC), hostile))
    assert "OR 1=1" not in query.sql
    assert query.sql.count("tenant_id = {tenant:String}") == 3  # the facts, the queue, the text search
    assert query.parameters == {"tenant": hostile, "limit": 26, "ended_as": "RunCompleted", "route": hostile,
                                "text": hostile, "before_started": "2026-12-01 00:00:00.000",
                                "before_run": hostile}
    assert "ORDER BY started DESC, run_id DESC" in query.sql


@pytest.mark.parametrize(("status", "condition"), [
    ("running", "ended_as = '' AND NOT parked"), ("awaiting_approval", "ended_as = '' AND parked"),
    ("failed", "ended_as = {ended_as:String}"), ("cancelled", "ended_as = {ended_as:String}"),
])
def test_each_status_is_its_own_condition(status: str, condition: str) -> None:
    assert condition in runs_page_query(tenant_id="t", limit=1, status=status).sql
    with pytest.raises(ValueError, match="status: 'lost' is none of"):
        runs_page_query(tenant_id="t", limit=1, status="lost")


def test_a_rows_status_is_named_as_the_fold_names_it() -> None:
    assert [status_of({"ended_as": t, "parked": p}) for t, p in [
        ("", 0), ("", 1), ("RunCompleted", 0), ("RunFailed", 1), ("RunCancelled", 0)]] == [
        "running", "awaiting_approval", "completed", "failed", "cancelled"]
    assert set(RUN_STATUSES) == {"running", "awaiting_approval", "completed", "failed", "cancelled"}


def test_a_tenant_sees_the_alerts_of_its_own_scope_filtered_before_the_limit() -> None:
    query = tenant_alerts_query(tenant_id="acme", firing_only=True, limit=5)
    assert query.parameters == {"scope": "tenant:acme", "firing_only": 1, "limit": 5}
    where, limit = query.sql.index("WHERE alerts.scope = {scope:String}"), query.sql.index("LIMIT")
    assert where < query.sql.index("GROUP BY") < limit
    assert query.sql.replace("WHERE alerts.scope = {scope:String}\n", "") == ALERTS_SQL
