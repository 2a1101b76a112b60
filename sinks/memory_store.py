"""The memory store in ClickHouse (chDB locally): memories, which tenants opted in, and the
ranked search over one tenant's memories.

Every statement names its tenant: no query reads or deletes across tenants. Expiry is enforced
on every read (search, get by id, list) against the caller's clock, and expired rows are swept
(`sweep`; the table's TTL clause removes them too, at ClickHouse's own pace). Writes require the
tenant to have opted in. Knows nothing of Kafka.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
import numpy as np
from clickhouse_connect.driver.client import Client

from processors.memory.records import DEFAULT_TTL_S, MemoryRecord
from processors.memory.retrieval import HybridIndex, MemoryIndex

__all__ = ["MemoryStore", "NotOptedIn", "Found", "MEMORY_DDL"]

MEMORY_DDL = [
    """CREATE TABLE IF NOT EXISTS memories (
        tenant_id String, memory_id String, subject String, text String,
        created_at DateTime64(3, 'UTC'), expires_at DateTime64(3, 'UTC'),
        source LowCardinality(String), run_id String, metadata String,
        stored_at DateTime64(6, 'UTC') DEFAULT now64(6)
    ) ENGINE = ReplacingMergeTree(stored_at) ORDER BY (tenant_id, memory_id)
    TTL toDateTime(expires_at) DELETE
    SETTINGS non_replicated_deduplication_window = 1000""",
    """CREATE TABLE IF NOT EXISTS memory_tenants (
        tenant_id String, opted_in UInt8, default_ttl_s UInt32, changed_at DateTime64(6, 'UTC')
    ) ENGINE = ReplacingMergeTree(changed_at) ORDER BY tenant_id""",
]

_COLUMNS = ["tenant_id", "memory_id", "subject", "text", "created_at", "expires_at", "source", "run_id",
            "metadata"]
_SELECT = ("SELECT memory_id, subject, text, created_at, expires_at, source, run_id, metadata "
           "FROM memories FINAL")


class NotOptedIn(RuntimeError):
    """The tenant has not opted in to long-term memory: nothing of it is stored."""


@dataclass(frozen=True)
class Found:
    memory: MemoryRecord
    score: float


@dataclass
class _Cached:
    stamp: tuple[int, Any]
    index: MemoryIndex
    records: list[MemoryRecord]
    subjects: np.ndarray[Any, Any]
    expires: np.ndarray[Any, Any]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class MemoryStore:
    """Memories of every tenant, one tenant per call."""

    def __init__(self, client: Client, *, sole_writer: bool = False) -> None:
        """sole_writer: no other process writes this store (chDB: one process per path), so the
        index of a tenant changes only with this object's writes and a search asks the store nothing
        to learn whether it is fresh."""
        self._client = client
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._sole_writer = sole_writer
        self._writes: dict[str, int] = {}

    @classmethod
    def connect(cls, *, url: str | None, chdb_path: str | None = None,
                password: str | None = None) -> MemoryStore:
        """A server by `url`, else the embedded chDB at `chdb_path` (owned by this process)."""
        if not url:
            assert chdb_path, "chDB needs a path"
        store = cls(clickhouse_connect.get_client(dsn=url or f"chdb://{chdb_path}", password=password or ""),
                    sole_writer=not url)
        store.ensure_schema()
        return store

    def ensure_schema(self) -> None:
        for statement in MEMORY_DDL:
            self._client.command(statement)

    def close(self) -> None:
        self._client.close()

    # -- opting in and out -------------------------------------------------------------------------

    def opt_in(self, tenant_id: str, *, default_ttl_s: int = DEFAULT_TTL_S, now: datetime) -> None:
        """Turn long-term memory on for the tenant, with the lifetime of a memory that names none."""
        self._client.insert("memory_tenants", [[tenant_id, 1, default_ttl_s, now]],
                            column_names=["tenant_id", "opted_in", "default_ttl_s", "changed_at"])

    def opt_out(self, tenant_id: str, *, now: datetime) -> list[str]:
        """Turn it off and forget every memory of the tenant; the ids forgotten."""
        self._client.insert("memory_tenants", [[tenant_id, 0, 0, now]],
                            column_names=["tenant_id", "opted_in", "default_ttl_s", "changed_at"])
        return self.forget(tenant_id, everything=True)

    def tenant_ttl(self, tenant_id: str) -> int | None:
        """The tenant's default lifetime in seconds if it opted in, else None."""
        rows = self._client.query(
            "SELECT opted_in, default_ttl_s FROM memory_tenants FINAL WHERE tenant_id = {t:String}",
            parameters={"t": tenant_id}).result_rows
        return int(rows[0][1]) if rows and rows[0][0] else None

    def opted_in(self, tenant_id: str) -> bool:
        return self.tenant_ttl(tenant_id) is not None

    def tenants(self, *, now: datetime) -> list[tuple[str, int, int]]:
        """Every opted-in tenant: (tenant, default lifetime in seconds, live memories)."""
        rows = self._client.query(
            "SELECT t.tenant_id, t.default_ttl_s, countIf(m.memory_id != '') FROM "
            "(SELECT tenant_id, default_ttl_s FROM memory_tenants FINAL WHERE opted_in = 1) AS t "
            "LEFT JOIN (SELECT tenant_id, memory_id FROM memories FINAL "
            "WHERE expires_at > {now:DateTime64(3)}) AS m ON m.tenant_id = t.tenant_id "
            "GROUP BY t.tenant_id, t.default_ttl_s ORDER BY t.tenant_id",
            parameters={"now": now}).result_rows
        return [(str(t), int(ttl), int(n)) for t, ttl, n in rows]

    # -- writes -----------------------------------------------------------------------------------

    def put(self, tenant_id: str, records: Sequence[MemoryRecord]) -> int:
        """Store memories of one opted-in tenant (a memory with the id of one stored replaces it)."""
        if not self.opted_in(tenant_id):
            raise NotOptedIn(f"tenant {tenant_id!r} has not opted in to long-term memory "
                             f"(agentlog memory opt-in --tenant {tenant_id})")
        if any(r.tenant_id != tenant_id for r in records):
            raise ValueError("every memory must be of the tenant it is stored for")
        if records:
            rows = [[r.tenant_id, r.memory_id, r.subject, r.text, r.created_at, r.expires_at, r.source,
                     r.run_id, json.dumps(dict(r.metadata), sort_keys=True, default=str)] for r in records]
            self._client.insert("memories", rows, column_names=_COLUMNS)
            self._wrote(tenant_id)
        return len(records)

    def _wrote(self, tenant_id: str | None) -> None:
        with self._lock:
            for tenant in [tenant_id] if tenant_id is not None else list(self._cache):
                self._writes[tenant] = self._writes.get(tenant, 0) + 1

    @staticmethod
    def _forget_where(tenant_id: str, memory_id: str | None, subject: str | None,
                      everything: bool) -> tuple[str, dict[str, Any]]:
        if sum([memory_id is not None, subject is not None, everything]) != 1:
            raise ValueError("forget one memory, one subject, or everything")
        where, params = "tenant_id = {t:String}", {"t": tenant_id, "v": memory_id or subject or ""}
        if memory_id is not None:
            where += " AND memory_id = {v:String}"
        elif subject is not None:
            where += " AND subject = {v:String}"
        return where, params

    def forget_ids(self, tenant_id: str, *, memory_id: str | None = None, subject: str | None = None,
                   everything: bool = False) -> list[str]:
        """The ids `forget` with the same arguments would delete now."""
        where, params = self._forget_where(tenant_id, memory_id, subject, everything)
        return [str(r[0]) for r in self._client.query(
            f"SELECT DISTINCT memory_id FROM memories WHERE {where} ORDER BY memory_id",
            parameters=params).result_rows]

    def forget(self, tenant_id: str, *, memory_id: str | None = None, subject: str | None = None,
               everything: bool = False) -> list[str]:
        """Delete one memory, a subject's or all of the tenant's (exactly one of them); the ids deleted."""
        where, params = self._forget_where(tenant_id, memory_id, subject, everything)
        ids = self.forget_ids(tenant_id, memory_id=memory_id, subject=subject, everything=everything)
        if ids:
            self._client.command(f"DELETE FROM memories WHERE {where}", parameters=params)
            self._wrote(tenant_id)
        return ids

    def erase(self, tenant_id: str | None = None) -> None:
        """Delete everything of the tenant (every tenant when None), opt-in included: what a rebuild
        starts from."""
        where, params = ("WHERE tenant_id = {t:String}", {"t": tenant_id}) if tenant_id is not None \
            else ("WHERE 1", {})
        for table in ("memories", "memory_tenants"):
            self._client.command(f"DELETE FROM {table} {where}", parameters=params)
        self._wrote(tenant_id)

    def sweep(self, *, now: datetime) -> int:
        """Delete every expired memory of every tenant; how many rows went."""
        params = {"now": now}
        gone = int(self._client.query("SELECT count() FROM memories WHERE expires_at <= {now:DateTime64(3)}",
                                      parameters=params).result_rows[0][0])
        if gone:
            self._client.command("DELETE FROM memories WHERE expires_at <= {now:DateTime64(3)}",
                                 parameters=params)
            self._wrote(None)
        return gone

    # -- reads ------------------------------------------------------------------------------------

    def get(self, tenant_id: str, memory_id: str, *, now: datetime) -> MemoryRecord | None:
        """One memory by id, None if it is not the tenant's, does not exist or has expired."""
        rows = self._rows(f"{_SELECT} WHERE tenant_id = {{t:String}} AND memory_id = {{id:String}} "
                          "AND expires_at > {now:DateTime64(3)}", tenant_id, id=memory_id, now=now)
        return rows[0] if rows else None

    def memories(self, tenant_id: str, *, subject: str | None = None, now: datetime,
             limit: int = 1000) -> list[MemoryRecord]:
        """The tenant's live memories, newest first."""
        cond = " AND subject = {s:String}" if subject is not None else ""
        return self._rows(f"{_SELECT} WHERE tenant_id = {{t:String}}{cond} "
                          "AND expires_at > {now:DateTime64(3)} "
                          f"ORDER BY created_at DESC, memory_id LIMIT {int(limit)}",
                          tenant_id, s=subject or "", now=now)

    def count(self, tenant_id: str) -> int:
        return int(self._client.query("SELECT count() FROM memories FINAL WHERE tenant_id = {t:String}",
                                      parameters={"t": tenant_id}).result_rows[0][0])

    def search(self, tenant_id: str, query: str, *, k: int = 10, subject: str | None = None,
               now: datetime) -> list[Found]:
        """The `k` memories of the tenant (about `subject`, when given) that answer `query` best,
        expired ones never among them."""
        cached = self._index(tenant_id)
        if not cached.records:
            return []
        mask = cached.expires > np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "ms")
        if subject is not None:
            mask &= cached.subjects == subject
        return [Found(cached.records[h.position], h.score)
                for h in cached.index.search(query, k=k, mask=mask)]

    def _index(self, tenant_id: str) -> _Cached:
        # The index is rebuilt when the tenant's rows change. With other writers (a server), that is
        # their count or latest write, asked at every search (one small aggregate, ~5 ms on chDB);
        # as the sole writer, this object's own writes tell.
        stamp: tuple[int, Any]
        if self._sole_writer:
            with self._lock:
                stamp = (self._writes.get(tenant_id, 0), None)
        else:
            stamp_row = self._client.query(
                "SELECT count(), max(stored_at) FROM memories WHERE tenant_id = {t:String}",
                parameters={"t": tenant_id}).result_rows[0]
            stamp = (int(stamp_row[0]), stamp_row[1])
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and cached.stamp == stamp:
                return cached
        records = self._rows(f"{_SELECT} WHERE tenant_id = {{t:String}} ORDER BY memory_id", tenant_id)
        cached = _Cached(stamp, HybridIndex([r.text for r in records]), records,
                         np.array([r.subject for r in records], dtype=object),
                         np.array([r.expires_at.astimezone(UTC).replace(tzinfo=None) for r in records],
                                  dtype="datetime64[ms]"))
        with self._lock:
            self._cache[tenant_id] = cached
        return cached

    def _rows(self, sql: str, tenant_id: str, **params: Any) -> list[MemoryRecord]:
        result = self._client.query(sql, parameters={"t": tenant_id, **params})
        return [MemoryRecord(tenant_id=tenant_id, memory_id=m, subject=s, text=t, created_at=_utc(c),
                             expires_at=_utc(e), source=src, run_id=run, metadata=json.loads(meta or "{}"))
                for m, s, t, c, e, src, run, meta in result.result_rows]
