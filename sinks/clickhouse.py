"""The ClickHouse store of events: schema, idempotent batch inserts, recovery and queries.

Works the same on chDB (`chdb:///path`, the embedded default) and on a server (`http://…`),
through clickhouse-connect. Knows nothing of Kafka: offsets arrive as plain numbers.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from schemas.events import Event
from sinks.alerts import ALERTS_DDL
from sinks.ddl import BACKFILLS, DDL, REPAIRS, RETIRED, UPGRADES

__all__ = ["ClickHouseStore", "EventRow", "event_row", "COLUMNS", "QueryResult", "REPLAY_TABLES", "StoredRun"]

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


_RUN_COLUMNS = ("tenant_id", "run_id", "seq", "event_id", "causation_id", "event_type", "actor",
                "event_time", "payload", "source_partition", "source_offset")


@dataclass(frozen=True)
class StoredRun:
    through: dict[int, int]
    """Per partition, the highest offset stored when the read began."""
    rows: list[dict[str, Any]]
    """The run's events as stored, in seq order (payload as JSON)."""


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
        self._through: dict[str, dict[int, int]] = {}
        self._through_lock = threading.Lock()

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
        for statement in [*DDL, *RETIRED, *ALERTS_DDL]:
            self._client.command(statement)
        made = str(self._client.command("SHOW CREATE TABLE agent_events"))
        for (kind, name), (add, build) in UPGRADES.items():
            # A projection's name comes before a line break (escaped, as the command answers it), an
            # index's before a space: matching a space alone built every projection at every start.
            if not re.search(rf"\b{kind.upper()} {name}(?:\s|\\n)", made):
                self._client.command(add)
                self._client.command(build)
        if self._count("agent_events"):
            for table, fill in BACKFILLS.items():
                if not self._count(table):
                    self._client.command(fill)

    def repair_views(self) -> None:
        """Bring every materialized view in line with the latest inserts (see `View.repair` in
        sinks/ddl.py): call it where inserts cannot run at the same time, before the first insert."""
        for repair in REPAIRS:
            self._client.command(repair)

    def _count(self, table: str) -> int:
        return int(self._client.query(f"SELECT count() FROM {table}").result_rows[0][0])

    def insert_events(self, rows: Sequence[EventRow], *, token: str) -> None:
        """Insert one batch atomically; the same token again inserts nothing (a retry)."""
        if rows:
            self._client.insert("agent_events", list(rows), column_names=COLUMNS,
                                settings={"insert_deduplication_token": token,
                                          "deduplicate_blocks_in_dependent_materialized_views": 1})
            done: dict[tuple[str, int], int] = {}
            for row in rows:
                done[(row[9], row[10])] = max(done.get((row[9], row[10]), -1), row[11])
            with self._through_lock:
                for (topic, partition), offset in done.items():
                    through = self._through.get(topic)
                    if through is not None:  # else the table, read when first asked, knows it
                        through[partition] = max(through.get(partition, -1), offset)

    def through(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the highest offset stored (a copy), kept in memory by the
        process that inserts (read from the table the first time, on this client: call it
        where inserts cannot run at the same time): what a run read asks before every read."""
        with self._through_lock:
            if topic not in self._through:
                self._through[topic] = self.stored_offsets(topic)
            return dict(self._through[topic])

    def known_through(self, topic: str) -> dict[int, int] | None:
        """`through` if it is known already (safe from any thread), else None."""
        with self._through_lock:
            known = self._through.get(topic)
            return dict(known) if known is not None else None

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], *, columns: Sequence[str],
                    token: str) -> None:
        """Insert rows into one of REPLAY_TABLES; the same token again inserts nothing."""
        if table not in REPLAY_TABLES:
            raise ValueError(f"{table!r} takes no inserts from outside the sink")
        if rows:
            self._client.insert(table, [list(r) for r in rows], column_names=list(columns),
                                settings={"insert_deduplication_token": token})

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the highest offset already stored (from the `offsets`
        projection: a few rows per part, and exactly what the parts hold)."""
        result = self._client.query(
            "SELECT source_partition, max(source_offset) FROM agent_events "
            "WHERE source_topic = {topic:String} GROUP BY source_partition",
            parameters={"topic": topic},
        )
        return {int(p): int(o) for p, o in result.result_rows}

    def stored_run(self, topic: str, run_id: str, *, tenant_id: str | None = None,
                   through: dict[int, int] | None = None) -> StoredRun:
        """What the store holds of one run (a key-range read), and up to where it holds the log.

        The offsets are read first: every event of the run up to them is among the rows.
        tenant_id: the run's tenant when known (a run of another tenant then reads as none).
        through: the offsets, from the inserting process (which holds the lock inserts take).
        """
        through = dict(through) if through is not None else self.stored_offsets(topic)
        tenant = ("{tenant:String}" if tenant_id is not None
                  else "(SELECT any(tenant_id) FROM agent_events WHERE run_id = {run:String})")
        rows = self._client.query(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM agent_events "
            f"WHERE tenant_id = {tenant} AND run_id = {{run:String}} ORDER BY seq LIMIT 1 BY seq",
            parameters={"tenant": tenant_id or "", "run": run_id}).result_rows
        return StoredRun(through, [{**dict(zip(_RUN_COLUMNS, r, strict=True)), "event_time": _utc(r[7])}
                                   for r in rows])

    def waiting_approvals(self, topic: str, *, tenant_id: str | None = None,
                          through: dict[int, int] | None = None,
                          ) -> tuple[dict[int, int], list[dict[str, Any]]]:
        """Up to where the store holds the log (read first, unless given as for `stored_run`),
        and the runs whose latest approval event, as stored, parks a call."""
        through = dict(through) if through is not None else self.stored_offsets(topic)
        result = self._client.query(
            "SELECT tenant_id, run_id, seq, event_time, payload FROM approval_queue FINAL "
            "WHERE event_type = 'ApprovalRequested' "
            "AND ({tenant:String} = '' OR tenant_id = {tenant:String}) ORDER BY event_time",
            parameters={"tenant": tenant_id or ""})
        return through, [{"tenant_id": t, "run_id": r, "seq": seq, "event_time": _utc(at), "payload": payload}
                         for t, r, seq, at, payload in result.result_rows]

    def query(self, sql: str, *, parameters: dict[str, Any] | None = None) -> QueryResult:
        """Run a query (on a `reader()`, one that cannot change data)."""
        result = self._client.query(sql, parameters=parameters)
        rows = [[_jsonable(v) for v in row] for row in result.result_rows]
        return QueryResult(list(result.column_names), rows)

    def close(self) -> None:
        self._client.close()


def _utc(value: datetime) -> datetime:
    # DateTime64(3, 'UTC') comes back naive from some clients: it is UTC all the same.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
