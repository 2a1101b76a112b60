"""The queries behind the console's lists: a tenant's runs, newest first, a page at a time, and
the tenant's alerts. Pure builders of SQL text and parameters, like `sinks/metrics.py`: what a
caller asks reaches the store only as parameters, and a tenant's query is always its own.

A page is read from `run_facts` (one row per run once its partial rows merge: a scan of the
tenant's facts, not of its events), and the page's own runs then get their request text and
tool calls from `agent_events` by key (tenant, run). A text filter is the one query that reads
the tenant's `RunStarted` payloads.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sinks.alerts import ALERTS_SQL
from sinks.ddl import RUN_FACTS
from sinks.metrics import Query

__all__ = ["RUN_STATUSES", "Cursor", "runs_page_query", "run_details_query", "tenant_alerts_query",
           "status_of", "tenant_scope"]

RUN_STATUSES = ("running", "awaiting_approval", "completed", "failed", "cancelled")
"""What a run's status can be, as the fold names it (`processors.state.Status`)."""

_ENDED_AS = {"completed": "RunCompleted", "failed": "RunFailed", "cancelled": "RunCancelled"}
_TIME = "DateTime64(3, 'UTC')"

# A run is parked when the latest of its approval-queue events asks for a person.
_PARKED = """run_id IN (SELECT run_id FROM approval_queue WHERE tenant_id = {tenant:String}
        GROUP BY run_id HAVING argMax(event_type, seq) = 'ApprovalRequested')"""

_MATCHING = """run_id IN (SELECT run_id FROM agent_events WHERE tenant_id = {tenant:String}
        AND event_type = 'RunStarted'
        AND (positionCaseInsensitiveUTF8(JSONExtractString(payload, 'text'), {text:String}) > 0
             OR startsWith(run_id, {text:String})))"""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the next page holds the runs started before this one (ties by run id)."""

    started: datetime
    run_id: str

    def encode(self) -> str:
        raw = f"{self.started.astimezone(UTC).isoformat(timespec='milliseconds')}|{self.run_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """ValueError for anything `encode` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, run_id = raw.split("|", 1)
            started = datetime.fromisoformat(when)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor this API gave (use the `next` of a page)") from None
        if started.tzinfo is None or not run_id or "\x00" in run_id:
            raise ValueError("not a cursor this API gave (use the `next` of a page)")
        return cls(started.astimezone(UTC), run_id)


def _param_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def runs_page_query(*, tenant_id: str, limit: int, status: str | None = None, route: str | None = None,
                    text: str | None = None, before: Cursor | None = None) -> Query:
    """One page of the tenant's runs, newest first: `limit` + 1 rows, the extra one telling that
    another page follows. Columns: run_id, route, model, started, ended, ended_as, outcome,
    success, violations, cost_usd, parked."""
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"status: {status!r} is none of {', '.join(RUN_STATUSES)}")
    params: dict[str, object] = {"tenant": tenant_id, "limit": limit + 1}
    having = ["started IS NOT NULL"]
    if status in _ENDED_AS:
        params["ended_as"] = _ENDED_AS[status]
        having.append("ended_as = {ended_as:String}")
    elif status is not None:
        having.append("ended_as = ''")
        having.append("parked" if status == "awaiting_approval" else "NOT parked")
    if route is not None:
        params["route"] = route
        having.append("route = {route:String}")
    where = ["tenant_id = {tenant:String}"]
    if text is not None:
        params["text"] = text
        where.append(_MATCHING)
    if before is not None:
        params["before_started"], params["before_run"] = _param_time(before.started), before.run_id
        having.append(f"(started, run_id) < ({{before_started:{_TIME}}}, {{before_run:String}})")
    sql = f"""
SELECT run_id, route, model, started, ended, ended_as, outcome, success, violations, cost_usd, parked
FROM (
    SELECT run_id,
        max(route) AS route,
        argMinMerge(planner_model) AS model,
        min(started_at) AS started,
        max(ended_at) AS ended,
        max(terminal_type) AS ended_as,
        max(outcome) AS outcome,
        ended_as = 'RunCompleted' AND max(spoiled) = 0 AS success,
        uniqExactMerge(violations) AS violations,
        max(cost_usd) AS cost_usd,
        {_PARKED} AS parked
    FROM {RUN_FACTS}
    WHERE {" AND ".join(where)}
    GROUP BY run_id
    HAVING {" AND ".join(having)}
)
ORDER BY started DESC, run_id DESC
LIMIT {{limit:UInt32}}"""
    return Query(sql.strip(), params)


def run_details_query(*, tenant_id: str, run_ids: Sequence[str]) -> Query:
    """Per run of a page: its request's text and the tool calls it ran (a key-range read each)."""
    sql = """
SELECT run_id,
    anyIf(JSONExtractString(payload, 'text'), event_type = 'RunStarted') AS text,
    countIf(event_type = 'ToolExecuted') AS tool_calls
FROM agent_events
WHERE tenant_id = {tenant:String} AND run_id IN {runs:Array(String)}
GROUP BY run_id"""
    return Query(sql.strip(), {"tenant": tenant_id, "runs": list(run_ids)})


def status_of(row: dict[str, object]) -> str:
    """A page row's status, named as the fold names it."""
    ended_as = str(row.get("ended_as") or "")
    for status, event_type in _ENDED_AS.items():
        if ended_as == event_type:
            return status
    return "awaiting_approval" if row.get("parked") else "running"


def tenant_scope(tenant_id: str) -> str:
    """The alert scope of a tenant's own runs (route and candidate alerts span tenants)."""
    return f"tenant:{tenant_id}"


# ALERTS_SQL with the scope fixed before it groups: a filter after its LIMIT would lose alerts.
_SCOPED_ALERTS = ALERTS_SQL.replace("FROM alerts\n", "FROM alerts\nWHERE alerts.scope = {scope:String}\n", 1)
if _SCOPED_ALERTS == ALERTS_SQL:  # pragma: no cover - caught by the unit test on any edit of ALERTS_SQL
    raise RuntimeError("sinks.alerts.ALERTS_SQL changed shape: the tenant filter no longer applies")


def tenant_alerts_query(*, tenant_id: str, firing_only: bool, limit: int) -> Query:
    """The alerts of the tenant's own scope, newest first (the columns of `ALERTS_SQL`)."""
    return Query(_SCOPED_ALERTS, {"scope": tenant_scope(tenant_id), "firing_only": int(firing_only),
                                  "limit": limit})
