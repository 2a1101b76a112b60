"""The ClickHouse store of events: schema, idempotent batch inserts, recovery and queries.

Works the same on chDB (`chdb:///path`, the embedded default) and on a server (`http://…`),
through clickhouse-connect. Knows nothing of Kafka: offsets arrive as plain numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collections.abc import Sequence

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from schemas.events import Event

__all__ = ["ClickHouseStore", "EventRow", "event_row", "COLUMNS", "QueryResult", "REPLAY_TABLES"]

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
]

REPLAY_TABLES = frozenset({"replay_results", "replay_scores"})
"""The tables other processes may insert into, through the sink's query endpoint."""

COLUMNS = [
    "tenant_id", "run_id", "seq", "event_id", "causation_id", "event_type", "actor",
    "event_time", "payload", "source_topic", "source_partition", "source_offset",
]

EventRow = tuple[str, str, int, str, "str | None", str, str, datetime, str, str, int, int]


def event_row(event: Event, *, topic: str, partition: int, offset: int) -> EventRow:
    """One `agent_events` row; the payload is kept whole as JSON."""
    return (
        event.tenant_id, event.run_id, event.seq, event.event_id, event.causation_id,
        event.event_type, event.actor, event.event_time, event.payload.model_dump_json(),
        topic, partition, offset,
    )


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class ClickHouseStore:
    """agent_events and the queries on it."""

    def __init__(self, client: Client, *, dsn: str | None = None, password: str | None = None) -> None:
        self._client = client
        self._dsn = dsn
        self._password = password

    @classmethod
    def connect(cls, *, url: str | None, chdb_path: str | None = None,
                password: str | None = None) -> ClickHouseStore:
        """A server by `url`, else the embedded chDB at `chdb_path` (owned by this process)."""
        if not url:
            assert chdb_path, "chDB needs a path"
        dsn = url or f"chdb://{chdb_path}"
        store = cls(clickhouse_connect.get_client(dsn=dsn, password=password or ""), dsn=dsn,
                    password=password)
        store.ensure_schema()
        return store

    def reader(self) -> ClickHouseStore:
        """A read-only client of the same store, for SQL from outside: whatever it is asked,
        it cannot write, and it never changes this client's session."""
        client = clickhouse_connect.get_client(dsn=self._dsn, password=self._password or "",
                                               settings={"readonly": 1})
        return ClickHouseStore(client, dsn=self._dsn, password=self._password)

    def ensure_schema(self) -> None:
        for statement in DDL:
            self._client.command(statement)

    def insert_events(self, rows: Sequence[EventRow], *, token: str) -> None:
        """Insert one batch atomically; the same token again inserts nothing (a retry)."""
        if rows:
            self._client.insert("agent_events", list(rows), column_names=COLUMNS,
                                settings={"insert_deduplication_token": token})

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], *, columns: Sequence[str],
                    token: str) -> None:
        """Insert rows into one of REPLAY_TABLES; the same token again inserts nothing."""
        if table not in REPLAY_TABLES:
            raise ValueError(f"{table!r} takes no inserts from outside the sink")
        if rows:
            self._client.insert(table, [list(r) for r in rows], column_names=list(columns),
                                settings={"insert_deduplication_token": token})

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the highest offset already stored."""
        result = self._client.query(
            "SELECT source_partition, max(source_offset) FROM agent_events "
            "WHERE source_topic = {topic:String} GROUP BY source_partition",
            parameters={"topic": topic},
        )
        return {int(p): int(o) for p, o in result.result_rows}

    def query(self, sql: str, *, parameters: dict[str, Any] | None = None) -> QueryResult:
        """Run a query (on a `reader()`, one that cannot change data)."""
        result = self._client.query(sql, parameters=parameters)
        rows = [[_jsonable(v) for v in row] for row in result.result_rows]
        return QueryResult(list(result.column_names), rows)

    def close(self) -> None:
        self._client.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value
