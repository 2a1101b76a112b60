"""The ClickHouse schema: the events, the replay tables, and the small tables that keep a run
read, the approval queue and the sink's progress from scanning the events.

Standard DDL, the same on chDB and on a ClickHouse server. Materialized views see only the rows
inserted after they exist: `BACKFILLS` fill a view's table once from what was there before.
"""

from __future__ import annotations

__all__ = ["DDL", "BACKFILLS", "APPROVAL_EVENTS"]

APPROVAL_EVENTS = ("ApprovalRequested", "ApprovalGranted", "ApprovalDenied", "ApprovalExpired",
                   "RunCancelled", "RunFailed")
"""The events that park a call, or end a wait for a person."""

DDL = [
    """
    CREATE TABLE IF NOT EXISTS agent_events (
        tenant_id      LowCardinality(String),
        run_id         String,
        seq            UInt64,
        event_id       String,
        causation_id   Nullable(String),
        event_type     LowCardinality(String),
        actor          LowCardinality(String),
        event_time     DateTime64(3, 'UTC'),
        payload        String,
        source_topic   LowCardinality(String),
        source_partition UInt32,
        source_offset  UInt64,
        inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
    )
    ENGINE = MergeTree
    ORDER BY (tenant_id, run_id, seq)
    SETTINGS non_replicated_deduplication_window = 10000
    """,
    # Replay results (one row per run and replay) and scores (one row per metric), written by
    # `agentlog replay` and `agentlog score`, so the replay delta can be charted by candidate.
    """
    CREATE TABLE IF NOT EXISTS replay_results (
        replay_id            String,
        mode                 LowCardinality(String),
        candidate            LowCardinality(String),
        replayed_at          DateTime64(3, 'UTC'),
        tenant_id            LowCardinality(String),
        run_id               String,
        route                LowCardinality(String),
        diverged             UInt8,
        divergent_seq        Nullable(UInt64),
        divergent_event      LowCardinality(String),
        unanswered           Nullable(String),
        baseline_status      LowCardinality(String),
        candidate_status     LowCardinality(String),
        baseline_cost_usd    Float64,
        candidate_cost_usd   Float64,
        baseline_latency_ms  UInt64,
        candidate_latency_ms UInt64,
        policy_regressions   UInt32,
        result               String
    )
    ENGINE = MergeTree
    ORDER BY (candidate, replayed_at, tenant_id, run_id)
    SETTINGS non_replicated_deduplication_window = 1000
    """,
    """
    CREATE TABLE IF NOT EXISTS replay_scores (
        replay_id       String,
        candidate       LowCardinality(String),
        scored_at       DateTime64(3, 'UTC'),
        metric          LowCardinality(String),
        baseline        Nullable(Float64),
        candidate_value Nullable(Float64),
        delta           Nullable(Float64),
        runs            UInt32,
        scores          String
    )
    ENGINE = MergeTree
    ORDER BY (candidate, scored_at, metric)
    SETTINGS non_replicated_deduplication_window = 1000
    """,
    # What a run read takes from ClickHouse before reading the log's tail after it: the highest
    # offset stored per partition (max is idempotent, so a retried insert changes nothing) …
    """
    CREATE TABLE IF NOT EXISTS event_offsets (
        source_topic     LowCardinality(String),
        source_partition UInt32,
        max_offset       SimpleAggregateFunction(max, UInt64)
    )
    ENGINE = AggregatingMergeTree
    ORDER BY (source_topic, source_partition)
    """,
    """
    CREATE MATERIALIZED VIEW IF NOT EXISTS event_offsets_mv TO event_offsets AS
    SELECT source_topic, source_partition, max(source_offset) AS max_offset
    FROM agent_events GROUP BY source_topic, source_partition
    """,
    # … where each run is (its tenant and partition), from its first event …
    """
    CREATE TABLE IF NOT EXISTS run_index (
        run_id           String,
        tenant_id        LowCardinality(String),
        source_partition UInt32,
        first_offset     UInt64,
        started_at       DateTime64(3, 'UTC')
    )
    ENGINE = ReplacingMergeTree
    ORDER BY run_id
    """,
    """
    CREATE MATERIALIZED VIEW IF NOT EXISTS run_index_mv TO run_index AS
    SELECT run_id, tenant_id, source_partition, source_offset AS first_offset, event_time AS started_at
    FROM agent_events WHERE seq = 1
    """,
    # … and the calls waiting for a person: per run, its latest event of those that park a call
    # or end a wait (the newest seq wins).
    """
    CREATE TABLE IF NOT EXISTS approval_queue (
        tenant_id   LowCardinality(String),
        run_id      String,
        seq         UInt64,
        event_type  LowCardinality(String),
        event_time  DateTime64(3, 'UTC'),
        payload     String
    )
    ENGINE = ReplacingMergeTree(seq)
    ORDER BY (tenant_id, run_id)
    """,
    f"""
    CREATE MATERIALIZED VIEW IF NOT EXISTS approval_queue_mv TO approval_queue AS
    SELECT tenant_id, run_id, seq, event_type, event_time, payload
    FROM agent_events WHERE event_type IN {APPROVAL_EVENTS}
    """,
]

BACKFILLS = {
    "event_offsets": """
        INSERT INTO event_offsets
        SELECT source_topic, source_partition, max(source_offset) FROM agent_events
        GROUP BY source_topic, source_partition""",
    "run_index": """
        INSERT INTO run_index
        SELECT run_id, tenant_id, source_partition, source_offset, event_time
        FROM agent_events WHERE seq = 1""",
    "approval_queue": f"""
        INSERT INTO approval_queue
        SELECT tenant_id, run_id, seq, event_type, event_time, payload FROM agent_events
        WHERE event_type IN {APPROVAL_EVENTS}""",
}
"""Per view table, how to fill it from `agent_events` when it is empty and the events are not."""
