"""The ClickHouse schema: the events, the replay tables, and what keeps the sink's progress, a
run read, the approval queue and the metrics from scanning the events.

Standard DDL, the same on chDB and on a ClickHouse server.

What the sink's exactly-once rests on (the highest offset stored per partition) and what finds a
run's tenant are aggregate projections of `agent_events`: a projection is written inside each
data part, so it holds exactly what the part holds, whatever kills the process mid-insert. A
materialized view is not: its insert follows the table's, and a kill between them leaves the
view behind the table (a view of the offsets once made the sink insert a batch twice). What a
projection cannot hold (the approval queue, filtered; the facts of each run, grouped by run
across parts) are `VIEWS`: each one's SELECT is written once and makes the view, its backfill
(`BACKFILLS`) and its repair (`REPAIRS`, run when the sink starts: the latest inserts again).
A repair inserts rows the view may already hold, so every view's table must take a repeat
unchanged: the queue keeps the newest seq per run, the facts are min/max/argMin/argMax and
uniqExact states.

Materialized views see only the rows inserted after they exist: `BACKFILLS` fill a view's table
once from what was there before; `UPGRADES` add a projection or index an older table lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import SPOILER_TYPES, TERMINAL_TYPES, VIOLATION_TYPES

__all__ = ["DDL", "VIEWS", "View", "BACKFILLS", "REPAIRS", "PROJECTIONS", "INDEXES", "UPGRADES", "RETIRED",
           "APPROVAL_EVENTS", "RUN_FACTS"]

APPROVAL_EVENTS = ("ApprovalRequested", "ApprovalGranted", "ApprovalDenied", "ApprovalExpired",
                   "RunCancelled", "RunFailed")
"""The events that park a call, or end a wait for a person."""


@dataclass(frozen=True)
class View:
    """A materialized view of `agent_events` into a table of its own."""

    name: str
    """The view."""
    table: str
    """The table it fills (made by `DDL` before the view)."""
    columns: str
    """The SELECT list, over the columns of `agent_events`."""
    where: str
    """Which events it takes."""
    group_by: str = ""
    """Per inserted block: what it aggregates by (an aggregating table merges the blocks)."""

    def select(self, *, also: str | None = None) -> str:
        """The view's SELECT, with `also` added to its condition."""
        where = f"({self.where}) AND ({also})" if also else self.where
        grouped = f" GROUP BY {self.group_by}" if self.group_by else ""
        return f"SELECT {self.columns} FROM agent_events WHERE {where}{grouped}"

    @property
    def create(self) -> str:
        return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name} TO {self.table} AS {self.select()}"

    @property
    def backfill(self) -> str:
        """Fill the table from every event (when it is empty and the events are not)."""
        return f"INSERT INTO {self.table} {self.select()}"

    @property
    def repair(self) -> str:
        """The latest inserts again: a kill after an insert and before its view's leaves them out
        of the view. Inserts run one after another, so only the last can be cut short, and a
        minute covers it."""
        return f"INSERT INTO {self.table} " + self.select(
            also="inserted_at >= (SELECT max(inserted_at) FROM agent_events) - INTERVAL 1 MINUTE")


def _in(types: frozenset[str] | tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{t}'" for t in sorted(types)) + ")"


_APPROVALS = View(
    name="approval_queue_mv", table="approval_queue",
    columns="tenant_id, run_id, seq, event_type, event_time, payload",
    where=f"event_type IN {_in(APPROVAL_EVENTS)}")

_FACT_EVENTS = (frozenset({"RunStarted", "PlanGenerated", "PlanRejected", "ResponseDrafted",
                           "ResponseFinalized", "ToolApproved"})
                | TERMINAL_TYPES | SPOILER_TYPES | VIOLATION_TYPES)
_MODEL = "JSONExtractString(payload, 'model_call', 'model')"
_TIME = "Nullable(DateTime64(3, 'UTC'))"

_FACTS = View(
    name="run_facts_mv", table="run_facts",
    # Only functions whose states take a repeat unchanged (min, max, argMin/argMax by seq,
    # uniqExact of event ids): a batch inserted twice, or a repair, changes no run's facts.
    # The finalizer is the model that wrote the final answer: a route's finalizer records its
    # call on ResponseFinalized; without one (or when it failed) the draft's template wrote it.
    columns=f"""tenant_id, run_id,
        maxIf(JSONExtractString(payload, 'route'), event_type = 'RunStarted') AS route,
        argMinStateIf({_MODEL}, seq, event_type IN ('PlanGenerated', 'PlanRejected')) AS planner_model,
        argMaxStateIf({_MODEL}, seq, event_type = 'ResponseDrafted'
                      OR (event_type = 'ResponseFinalized' AND {_MODEL} != '')) AS finalizer_model,
        minIfOrNull(event_time, event_type = 'RunStarted') AS started_at,
        minIfOrNull(event_time, event_type = 'ToolApproved') AS first_approved_at,
        maxIfOrNull(event_time, event_type IN {_in(TERMINAL_TYPES)}) AS ended_at,
        maxIf(event_type, event_type IN {_in(TERMINAL_TYPES)}) AS terminal_type,
        maxIf(JSONExtractString(payload, 'outcome'), event_type = 'RunCompleted') AS outcome,
        maxIf(toUInt8(1), event_type IN {_in(SPOILER_TYPES)}) AS spoiled,
        uniqExactStateIf(event_id, event_type IN {_in(VIOLATION_TYPES)}) AS violations,
        maxIf(JSONExtractFloat(payload, 'cost_usd'), event_type IN {_in(TERMINAL_TYPES)}) AS cost_usd""",
    where=f"event_type IN {_in(_FACT_EVENTS)}",
    group_by="tenant_id, run_id")

VIEWS = [_APPROVALS, _FACTS]
"""Every materialized view, in the order they are made."""

RUN_FACTS = _FACTS.table
"""One row of facts per run (after its partial rows are merged: see `sinks/metrics.py`)."""

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
    # The facts of each run, in partial rows (one per insert that held some of its events)
    # that merge into one; read them grouped by run.
    f"""
    CREATE TABLE IF NOT EXISTS run_facts (
        tenant_id         LowCardinality(String),
        run_id            String,
        route             SimpleAggregateFunction(max, String),
        planner_model     AggregateFunction(argMin, String, UInt64),
        finalizer_model   AggregateFunction(argMax, String, UInt64),
        started_at        SimpleAggregateFunction(min, {_TIME}),
        first_approved_at SimpleAggregateFunction(min, {_TIME}),
        ended_at          SimpleAggregateFunction(max, {_TIME}),
        terminal_type     SimpleAggregateFunction(max, String),
        outcome           SimpleAggregateFunction(max, String),
        spoiled           SimpleAggregateFunction(max, UInt8),
        violations        AggregateFunction(uniqExact, String),
        cost_usd          SimpleAggregateFunction(max, Float64)
    )
    ENGINE = AggregatingMergeTree
    ORDER BY (tenant_id, run_id)
    """,
    *(view.create for view in VIEWS),
]

BACKFILLS = {view.table: view.backfill for view in VIEWS}
"""Per view table, how to fill it from `agent_events` when it is empty and the events are not."""

REPAIRS = [view.repair for view in VIEWS]
"""What brings every view in line with the latest inserts (see `View.repair`): run where inserts
cannot run at the same time, before the first insert."""

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
