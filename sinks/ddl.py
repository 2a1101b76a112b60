"""The ClickHouse schema: the events, the replay tables, and what keeps the sink's progress, a
run read and the approval queue from scanning the events.

Standard DDL, the same on chDB and on a ClickHouse server.

What the sink's exactly-once rests on (the highest offset stored per partition) and what finds a
run's tenant are aggregate projections of `agent_events`: a projection is written inside each
data part, so it holds exactly what the part holds, whatever kills the process mid-insert. A
materialized view is not: its insert follows the table's, and a kill between them leaves the
view behind the table (a view of the offsets once made the sink insert a batch twice). The
approval queue, which a projection cannot filter, stays a view, brought back in line with the
latest inserts when the sink starts (`REPAIR_APPROVALS`).

Materialized views see only the rows inserted after they exist: `BACKFILLS` fill a view's table
once from what was there before; `UPGRADES` add a projection or index an older table lacks.
"""

from __future__ import annotations

__all__ = ["DDL", "BACKFILLS", "PROJECTIONS", "INDEXES", "UPGRADES", "RETIRED", "REPAIR_APPROVALS",
           "APPROVAL_EVENTS"]

APPROVAL_EVENTS = ("ApprovalRequested", "ApprovalGranted", "ApprovalDenied", "ApprovalExpired",
                   "RunCancelled", "RunFailed")
"""The events that park a call, or end a wait for a person."""

PROJECTIONS = {
    # The highest offset stored per partition (where the sink resumes, up to where a run read
    # takes rows) and when the latest insert ran …
    "offsets": "SELECT source_topic, source_partition, max(source_offset), max(inserted_at) "
               "GROUP BY source_topic, source_partition",
    # … and each run's tenant, for a read by run id alone.
    "runs": "SELECT run_id, any(tenant_id) GROUP BY run_id",
}
"""The aggregate projections of `agent_events`, by name: queries of this shape read them."""

INDEXES = {"inserted": "inserted_at TYPE minmax GRANULARITY 1"}
"""The skip indexes of `agent_events`: `inserted` finds the latest inserts without a scan."""

_EXTRAS = ",\n".join([*(f"        PROJECTION {n} ({q})" for n, q in PROJECTIONS.items()),
                      *(f"        INDEX {n} {d}" for n, d in INDEXES.items())])

DDL = [
    f"""
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
        inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3),
{_EXTRAS}
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
    # The calls waiting for a person: per run, its latest event of those that park a call or
    # end a wait (the newest seq wins).
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
    "approval_queue": f"""
        INSERT INTO approval_queue
        SELECT tenant_id, run_id, seq, event_type, event_time, payload FROM agent_events
        WHERE event_type IN {APPROVAL_EVENTS}""",
}
"""Per view table, how to fill it from `agent_events` when it is empty and the events are not."""

UPGRADES = {
    **{("projection", n): (f"ALTER TABLE agent_events ADD PROJECTION IF NOT EXISTS {n} ({q})",
                           f"ALTER TABLE agent_events MATERIALIZE PROJECTION {n} SETTINGS mutations_sync = 2")
       for n, q in PROJECTIONS.items()},
    **{("index", n): (f"ALTER TABLE agent_events ADD INDEX IF NOT EXISTS {n} {d}",
                      f"ALTER TABLE agent_events MATERIALIZE INDEX {n} SETTINGS mutations_sync = 2")
       for n, d in INDEXES.items()},
}
"""For an `agent_events` made without one of them, per (kind, name): how to add the projection
or index, and how to build it for the parts already there."""

RETIRED = [
    "DROP VIEW IF EXISTS event_offsets_mv",
    "DROP TABLE IF EXISTS event_offsets",
    "DROP VIEW IF EXISTS run_index_mv",
    "DROP TABLE IF EXISTS run_index",
]
"""Views of an earlier layout, whose work the projections do."""

REPAIR_APPROVALS = f"""
    INSERT INTO approval_queue
    SELECT tenant_id, run_id, seq, event_type, event_time, payload FROM agent_events
    WHERE event_type IN {APPROVAL_EVENTS}
      AND inserted_at >= (SELECT max(inserted_at) FROM agent_events) - INTERVAL 1 MINUTE"""
"""The approval events of the latest inserts again: a kill after an insert and before its view's
leaves them out of the queue. The queue keeps the newest seq per run, so a repeat changes nothing;
inserts run one after another, so only the last can be cut short, and a minute covers it."""
