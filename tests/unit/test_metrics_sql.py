"""The metrics' SQL builders and the options of `agentlog metrics`, without a store: what a
caller asks reaches the query only as parameters, and a tenant's query is always its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sinks.metrics import GROUP_KEYS, metrics_query, parse_keys, parse_time, replay_delta_query
from streams.cli import main

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_group_keys_keep_the_order_given_once_each_and_unknown_ones_are_named() -> None:
    assert parse_keys("day, tenant,day,model") == ("day", "tenant", "model")
    assert parse_keys(None) == () and parse_keys("") == ()
    known = r"\(known: tenant, route, model, day\)"
    with pytest.raises(ValueError, match=rf"unknown group key 'tenants', 'x' {known}"):
        parse_keys("tenants,route,x")


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
    ("2026-11-30T09:30", datetime(2026, 11, 30, 9, 30, tzinfo=UTC)),
    ("2026-11-30T09:30:00+02:00", datetime(2026, 11, 30, 7, 30, tzinfo=UTC)),
    ("2026-11-30T09:30:00Z", datetime(2026, 11, 30, 9, 30, tzinfo=UTC)),
    ("90m", NOW - timedelta(minutes=90)), ("12h", NOW - timedelta(hours=12)),
    ("7d", NOW - timedelta(days=7)), ("2w", NOW - timedelta(weeks=2)),
])
def test_times_are_iso_dates_or_spans_before_now(text: str, moment: datetime) -> None:
    assert parse_time(text, now=NOW) == moment


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3d", "9999-01-01", "99999999999w", ""])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"neither an ISO date or time|outside the years the store holds"):
        parse_time(text, now=NOW)


def test_a_tenant_query_reads_only_that_tenant_whatever_it_groups_by() -> None:
    for by in [(), ("tenant",), GROUP_KEYS]:
        query = metrics_query(by=by, tenant_id="acme' OR 1=1 --")
        assert "WHERE tenant_id = {tenant:String}" in query.sql
        assert query.parameters == {"tenant": "acme' OR 1=1 --"}
        assert "OR 1=1" not in query.sql
    replay = replay_delta_query(tenant_id="acme")
    assert "HAVING min(tenant_id) = {tenant:String} AND max(tenant_id) = {tenant:String}" in replay.sql
    assert "{tenant:String}" not in metrics_query(by=GROUP_KEYS).sql, "without a tenant: every tenant"


def test_the_time_range_is_a_half_open_interval_on_the_run_start_passed_as_parameters() -> None:
    query = metrics_query(by=["day"], since=datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC),
                          until=datetime(2026, 12, 1, 3, 0, tzinfo=UTC).astimezone())
    assert query.parameters == {"since": "2026-11-30 01:02:03.456", "until": "2026-12-01 03:00:00.000"}
    assert "started >= {since:DateTime64(3, 'UTC')}" in query.sql
    assert "started < {until:DateTime64(3, 'UTC')}" in query.sql
    with pytest.raises(ValueError, match="the time range is empty"):
        metrics_query(since=NOW, until=NOW)


def test_the_rows_carry_the_group_keys_asked_then_the_metrics() -> None:
    head = metrics_query(by=["model", "tenant"]).sql.split("count()")[0]
    assert head.index("AS model") < head.index("AS tenant")
    assert "GROUP BY model, tenant ORDER BY model, tenant" in metrics_query(by=["model", "tenant"]).sql


@pytest.mark.parametrize(("args", "message"), [
    (["metrics", "--by", "tenant,colour"], "unknown group key 'colour'"),
    (["metrics", "--since", "last week"], "neither an ISO date or time"),
    (["metrics", "--since", "2026-12-02", "--until", "2026-12-01"], "the time range is empty"),
    (["metrics", "replay", "--until", "soon"], "neither an ISO date or time"),
    (["metrics", "totals"], "No such command 'totals'"),
])
def test_bad_options_exit_2_with_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args, env={"AGENTLOG_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert message in result.output
