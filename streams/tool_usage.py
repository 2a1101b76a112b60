"""How often a tool has been called: in one run (read from the log, exactly) and by one tenant
today (from the ClickHouse store), for the guard's call budgets and the policies that count."""

from __future__ import annotations

import logging

from processors.tool_budgets import ToolUsage, run_calls_of
from schemas.events import Event
from streams.query_api import QueryError, run_query
from streams.run_reads import RunReader
from streams.settings import Settings

__all__ = ["TENANT_CALLS_SQL", "tool_usage"]

log = logging.getLogger(__name__)

TENANT_CALLS_SQL = """
SELECT count() AS calls
FROM agent_events
WHERE tenant_id = {tenant:String} AND event_type = 'ToolExecuted'
  AND JSONExtractString(payload, 'tool') = {tool:String}
  AND event_time >= toStartOfDay(now64(3, 'UTC'))
"""


def tool_usage(settings: Settings, reader: RunReader, proposed: Event, *, tool: str,
               tenant: bool) -> ToolUsage:
    """Calls of `tool` before `proposed`: in its run, and (with `tenant`) by its tenant today.

    The run's count is read-your-writes (the run read takes the log's tail past the store), so
    the call before this one is always counted. The tenant's count lags the log by the sink's
    batch delay, so calls of concurrent runs can overshoot the budget by what they make meanwhile.
    """
    run_calls = run_calls_of(reader.read(proposed.run_id).events, tool)
    tenant_calls: int | None = None
    if tenant:
        try:
            result = run_query(settings, TENANT_CALLS_SQL, sink_running=True,
                               parameters={"tenant": proposed.tenant_id, "tool": tool})
            tenant_calls = int(result.rows[0][0]) if result.rows else 0
        except (QueryError, OSError) as exc:
            log.warning("cannot count tenant %s's calls of %s today: %s", proposed.tenant_id, tool, exc)
    return ToolUsage(run_calls=run_calls, tenant_calls=tenant_calls)
