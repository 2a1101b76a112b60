"""The `alerts` table: every record of the alerts topic, stored once, and what reads it.

The sink inserts alert records the way it inserts events: a batch with a deduplication token,
offsets committed after the insert, and a restart resuming after the highest offset the table
holds. The same alert raised twice (two records, one alert id) is harmless: readers take one row
per (alert id, kind).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from clickhouse_connect.driver.client import Client

from schemas.alerts import Alert, AlertRaised

__all__ = ["ALERTS_DDL", "ALERT_COLUMNS", "AlertRow", "alert_row", "insert_alerts", "stored_alert_offsets",
           "ALERTS_SQL"]

ALERTS_DDL = [
    """
    CREATE TABLE IF NOT EXISTS alerts (
        alert_id         String,
        kind             LowCardinality(String),
        rule             LowCardinality(String),
        severity         LowCardinality(String),
        scope            String,
        window_start     DateTime64(3, 'UTC'),
        window_end       DateTime64(3, 'UTC'),
        at               DateTime64(3, 'UTC'),
        summary          String,
        value            Nullable(Float64),
        threshold        Nullable(Float64),
        baseline         Nullable(Float64),
        runs             UInt64,
        source_topic     LowCardinality(String),
        source_partition UInt32,
        source_offset    UInt64,
        inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
    )
    ENGINE = MergeTree
    ORDER BY (alert_id, kind, source_partition, source_offset)
    SETTINGS non_replicated_deduplication_window = 10000
    """,
]

ALERT_COLUMNS = ["alert_id", "kind", "rule", "severity", "scope", "window_start", "window_end", "at",
                 "summary", "value", "threshold", "baseline", "runs", "source_topic", "source_partition",
                 "source_offset"]

AlertRow = tuple[str, str, str, str, str, datetime, datetime, datetime, str, "float | None", "float | None",
                 "float | None", int, str, int, int]


def alert_row(alert: Alert, *, topic: str, partition: int, offset: int) -> AlertRow:
    body = alert.body
    raised = body if isinstance(body, AlertRaised) else None
    return (alert.alert_id, alert.kind, alert.rule, alert.severity, alert.scope, alert.window_start,
            alert.window_end, alert.at, alert.summary, body.value,
            raised.threshold if raised else None, raised.baseline if raised else None,
            raised.runs if raised else 0, topic, partition, offset)


def insert_alerts(client: Client, rows: Sequence[AlertRow], *, token: str) -> None:
    """Insert one batch atomically; the same token again inserts nothing (a retry)."""
    if rows:
        client.insert("alerts", list(rows), column_names=ALERT_COLUMNS,
                      settings={"insert_deduplication_token": token})


def stored_alert_offsets(client: Client, topic: str) -> dict[int, int]:
    """Per partition of `topic`, the highest offset already stored (the table is small)."""
    result = client.query("SELECT source_partition, max(source_offset) FROM alerts "
                          "WHERE source_topic = {topic:String} GROUP BY source_partition",
                          parameters={"topic": topic})
    return {int(p): int(o) for p, o in result.result_rows}


ALERTS_SQL = """
SELECT alert_id, any(rule) AS rule, any(severity) AS severity, any(scope) AS scope,
       min(window_start) AS window_start, min(window_end) AS window_end,
       minIf(at, kind = 'AlertRaised') AS raised_at,
       if(countIf(kind = 'AlertResolved') > 0,
          toString(minIf(at, kind = 'AlertResolved')), '') AS resolved_at,
       countIf(kind = 'AlertResolved') = 0 AS firing,
       argMinIf(summary, at, kind = 'AlertRaised') AS summary,
       argMinIf(value, at, kind = 'AlertRaised') AS value,
       argMinIf(threshold, at, kind = 'AlertRaised') AS threshold,
       argMinIf(baseline, at, kind = 'AlertRaised') AS baseline
FROM alerts
GROUP BY alert_id
HAVING countIf(kind = 'AlertRaised') > 0
   AND ({firing_only:UInt8} = 0 OR firing)
ORDER BY raised_at DESC
LIMIT {limit:UInt32}
"""
"""One row per alert (raised, and resolved or still firing), newest first."""
