"""The five metrics as SQL: pure builders of query text and parameters, run by whoever reaches
the store (the CLI through the sink's query endpoint, the gateway for a caller's tenant).

The definitions (README, "Metrics"):

- A run **succeeds** when it ends in RunCompleted with none of `SPOILER_TYPES` in it.
- **Policy violations** are ToolRejected plus ApprovalRequested events; the **violation rate** is
  violations per 100 runs.
- **Cost per successful run** is the cost of all the group's runs (each run's terminal
  `cost_usd`: completed, failed or cancelled) divided by its successful runs; none when no run
  succeeded.
- **Time to first action** is RunStarted → the run's first ToolApproved (the guard's or a
  person's); p50 and p95 interpolate linearly between the closest ranks (numpy's default),
  over the runs that had an approved action.
- **Replay delta** is the candidate's quality minus the baseline's, per candidate and day, from
  `replay_scores` (each replay's latest quality score, the day's replays weighted by their runs).

A run belongs to the day (UTC) and the time range of its RunStarted, with the route it started
on and the model that planned it. A run still going counts as a run, not (yet) as a success,
and its cost counts once it ends: the daily figures are a query over the facts of each run,
not a table of their own, because a run's success and cost are known only at its end, which
can be another day than its start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sinks.ddl import RUN_FACTS

__all__ = ["GROUP_KEYS", "METRICS", "REPLAY_COLUMNS", "RUN_FACT_COLUMNS", "Query", "parse_keys", "parse_time",
           "metrics_query", "run_facts_query", "replay_delta_query"]

GROUP_KEYS = ("tenant", "route", "model", "day")
"""What the metrics can be grouped by (`model` is the planner's)."""

METRICS = ("runs", "successes", "success_rate", "violations", "violation_rate_per_100", "cost_usd",
           "cost_per_success_usd", "ttfa_p50_ms", "ttfa_p95_ms")
"""The columns of every metrics row, after its group keys."""

REPLAY_COLUMNS = ("candidate", "day", "replays", "runs", "baseline_quality", "candidate_quality",
                  "replay_delta")
"""The columns of every replay delta row."""

RUN_FACT_COLUMNS = ("run_id", "tenant_id", "route", "model", "finalizer", "started", "ended", "ended_as",
                    "outcome", "success", "violations", "cost_usd", "ttfa_ms")
"""The columns of every row of `run_facts_query`."""

_KEY_SQL = {"tenant": "tenant_id", "route": "route", "model": "model", "day": "toString(toDate(started))"}

# Each run's facts from its partial rows (one per insert that held some of its events).
_PER_RUN = """    SELECT tenant_id, run_id,
        max(route) AS route,
        argMinMerge(planner_model) AS model,
        argMaxMerge(finalizer_model) AS finalizer,
        min(started_at) AS started,
        max(ended_at) AS ended,
        max(terminal_type) AS ended_as,
        max(outcome) AS run_outcome,
        ended_as = 'RunCompleted' AND max(spoiled) = 0 AS success,
        uniqExactMerge(violations) AS run_violations,
        max(cost_usd) AS run_cost_usd,
        dateDiff('millisecond', started, min(first_approved_at)) AS ttfa_ms"""

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TIME = "DateTime64(3, 'UTC')"
_EARLIEST, _LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC)  # DateTime64's


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_keys(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Group keys from `tenant,route` (or a list of them), in the order given, each once;
    ValueError naming the unknown ones."""
    if text is None:
        return ()
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    keys = [p.strip() for p in parts if p.strip()]
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"unknown group key {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(GROUP_KEYS)})")
    return tuple(dict.fromkeys(keys))


def parse_time(text: str, *, now: datetime) -> datetime:
    """A moment from an ISO date or time (UTC unless it says otherwise) or a span before `now`
    (`30m`, `12h`, `7d`, `2w`); ValueError otherwise, or outside the years the store holds."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    try:
        if relative:
            moment = now - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is neither an ISO date or time (2026-12-01, 2026-12-01T09:30) "
                         "nor a span before now (30m, 12h, 7d, 2w)") from None
    if not _EARLIEST <= moment <= _LATEST:
        raise ValueError(f"{text!r} is outside the years the store holds (1900 to 2299)")
    return moment


def _param_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _range(column: str, since: datetime | None, until: datetime | None,
           params: dict[str, Any]) -> list[str]:
    if since is not None and until is not None and until <= since:
        raise ValueError("the time range is empty: until must be after since")
    out = []
    if since is not None:
        params["since"] = _param_time(since)
        out.append(f"{column} >= {{since:{_TIME}}}")
    if until is not None:
        params["until"] = _param_time(until)
        out.append(f"{column} < {{until:{_TIME}}}")
    return out


def metrics_query(*, by: Sequence[str] = (), since: datetime | None = None, until: datetime | None = None,
                  tenant_id: str | None = None, run_ids: Sequence[str] | None = None) -> Query:
    """The metrics of the runs started in [since, until), grouped by `by` (of `GROUP_KEYS`; none:
    one row of totals), ordered by the keys.

    tenant_id: only this tenant's runs, whatever else is asked (the caller of the HTTP API).
    run_ids: only these runs.
    """
    keys = parse_keys(list(by))
    params: dict[str, Any] = {}
    where = _where(tenant_id, run_ids, params)
    having = " AND ".join(["started IS NOT NULL", *_range("started", since, until, params)])
    selected = "".join(f"{_KEY_SQL[k]} AS {k}, " for k in keys)
    grouped = f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    # Each run's partial rows merge first (GROUP BY run), then the runs aggregate by the keys.
    sql = f"""
SELECT {selected}
    count() AS runs,
    countIf(success) AS successes,
    if(runs = 0, NULL, successes / runs) AS success_rate,
    sum(run_violations) AS violations,
    if(runs = 0, NULL, violations * 100 / runs) AS violation_rate_per_100,
    sum(run_cost_usd) AS cost_usd,
    if(successes = 0, NULL, cost_usd / successes) AS cost_per_success_usd,
    quantileExactInclusive(0.5)(ttfa_ms) AS ttfa_p50_ms,
    quantileExactInclusive(0.95)(ttfa_ms) AS ttfa_p95_ms
FROM (
{_PER_RUN}
    FROM {RUN_FACTS} {where}
    GROUP BY tenant_id, run_id
    HAVING {having}
)
{grouped}"""
    return Query(sql.strip(), params)


def _where(tenant_id: str | None, run_ids: Sequence[str] | None, params: dict[str, Any]) -> str:
    conditions = []
    if tenant_id is not None:
        params["tenant"] = tenant_id
        conditions.append("tenant_id = {tenant:String}")
    if run_ids is not None:
        params["runs"] = list(run_ids)
        conditions.append("run_id IN {runs:Array(String)}")
    return "WHERE " + " AND ".join(conditions) if conditions else ""


def run_facts_query(*, run_ids: Sequence[str], tenant_id: str | None = None) -> Query:
    """The facts of these runs, one row each (`RUN_FACT_COLUMNS`), in the order they started."""
    params: dict[str, Any] = {}
    sql = f"""
SELECT run_id, tenant_id, route, model, finalizer, started, ended, ended_as, run_outcome AS outcome,
    success, run_violations AS violations, run_cost_usd AS cost_usd, ttfa_ms
FROM (
{_PER_RUN}
    FROM {RUN_FACTS} {_where(tenant_id, run_ids, params)}
    GROUP BY tenant_id, run_id
)
ORDER BY started, run_id"""
    return Query(sql.strip(), params)


def replay_delta_query(*, since: datetime | None = None, until: datetime | None = None,
                       tenant_id: str | None = None) -> Query:
    """The replay delta per candidate and day (UTC, of each replay's latest quality score),
    ordered by day then candidate.

    tenant_id: only replays of this tenant's runs alone (a replay's scores are over all its
    runs, so one that holds another tenant's run is not this tenant's to see).
    """
    params: dict[str, Any] = {}
    mine = ""
    if tenant_id is not None:
        params["tenant"] = tenant_id
        mine = ("AND replay_id IN (SELECT replay_id FROM replay_results GROUP BY replay_id "
                "HAVING min(tenant_id) = {tenant:String} AND max(tenant_id) = {tenant:String})")
    when = " AND ".join(_range("scored", since, until, params)) or "1"
    sql = f"""
SELECT candidate, toString(toDate(scored)) AS day,
    count() AS replays,
    sum(scored_runs) AS runs,
    sum(baseline_q * scored_runs) / runs AS baseline_quality,
    sum(candidate_q * scored_runs) / runs AS candidate_quality,
    candidate_quality - baseline_quality AS replay_delta
FROM (
    SELECT replay_id, candidate,
        max(scored_at) AS scored,
        argMax(baseline, scored_at) AS baseline_q,
        argMax(candidate_value, scored_at) AS candidate_q,
        argMax(replay_scores.runs, scored_at) AS scored_runs
    FROM replay_scores
    WHERE metric = 'quality' AND baseline IS NOT NULL AND candidate_value IS NOT NULL {mine}
    GROUP BY replay_id, candidate
    HAVING scored_runs > 0 AND {when}
)
GROUP BY candidate, day
ORDER BY day, candidate"""
    return Query(sql.strip(), params)
