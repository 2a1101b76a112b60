"""What a tenant has spent today, from the ClickHouse store (every run, every partition)."""

from __future__ import annotations

import logging

from streams.query_api import QueryError, run_query
from streams.settings import Settings

__all__ = ["tenant_spend_today", "SPEND_SQL"]

log = logging.getLogger(__name__)

SPEND_SQL = """
SELECT sum(multiIf(
    event_type = 'ToolExecuted', JSONExtractFloat(payload, 'cost_usd'),
    event_type IN ('PlanGenerated', 'PlanRejected', 'ResponseDrafted', 'ResponseFinalized'),
        JSONExtractFloat(payload, 'model_call', 'cost_usd'),
    0)) AS spent
FROM agent_events
WHERE tenant_id = {tenant:String} AND event_time >= toStartOfDay(now64(3, 'UTC'))
"""


def tenant_spend_today(settings: Settings, tenant_id: str) -> float | None:
    """USD spent by `tenant_id` since 00:00 UTC; None when the store cannot say.

    Services never open chDB themselves (it would lock the sink out): they ask the sink, or
    the ClickHouse server. The figure lags the log by the sink's batch delay (well under a
    second), so a burst of concurrent runs can overshoot a limit by what they spend meanwhile.
    """
    try:
        result = run_query(settings, SPEND_SQL, parameters={"tenant": tenant_id}, sink_running=True)
    except (QueryError, OSError) as exc:
        log.warning("cannot read tenant %s's spend today: %s", tenant_id, exc)
        return None
    value = result.rows[0][0] if result.rows else 0.0
    return float(value or 0.0)
