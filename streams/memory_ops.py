"""The memory operations every caller uses (CLI, gateway, the memory service), answered by the
store in this process or by the process that owns it.

chDB serves one process per path: while the memory service runs it owns `<home>/memory` and
answers the others on a loopback port (`streams/memory_api.py`); when it does not, a caller
opens the store itself. A ClickHouse server is opened directly by everyone. Every operation
returns the JSON the CLI prints, so both ways answer alike.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.memory import ledger
from processors.memory.records import DEFAULT_TTL_S, InvalidLine, parse_item, prepare
from schemas.memory_log import ForgetScope, MemoryChange
from sinks.memory_store import Found, MemoryStore, NotOptedIn
from streams.memory_log import MemoryLog, MemoryLogUnavailable
from streams.query_api import clickhouse_password, query_token
from streams.settings import Settings

__all__ = ["MemorySettings", "MemoryOps", "LocalMemory", "RemoteMemory", "MemoryRefused", "memory_ops",
           "open_local", "owner_alive", "memory_opted_in", "MemoryLogUnavailable"]


class MemorySettings(BaseSettings):
    """The memory service's own settings (`AGENTLOG_MEMORY_*`)."""

    model_config = SettingsConfigDict(env_prefix="AGENTLOG_MEMORY_", frozen=True, extra="ignore")

    port: int = Field(18124, ge=1, le=65_535)
    """Loopback port where the memory service answers the others (it owns the chDB path)."""
    sweep_s: float = Field(60.0, gt=0)
    """Seconds between two sweeps of expired memories by the memory service."""


class MemoryRefused(RuntimeError):
    """The operation was refused (a tenant that has not opted in, a bad line): the message says why."""


class MemoryOps(Protocol):
    """The memory operations; `actor` names who asks, recorded in the memory log (default: the
    caller's, given when the operations were opened)."""

    def opt_in(self, tenant: str, *, ttl_s: int, actor: str | None = None) -> dict[str, Any]: ...
    def opt_out(self, tenant: str, *, actor: str | None = None) -> dict[str, Any]: ...
    def import_lines(self, tenant: str, lines: Sequence[Mapping[str, Any]], *,
                     actor: str | None = None) -> dict[str, Any]: ...
    def search(self, tenant: str, query: str, *, k: int, subject: str | None) -> list[dict[str, Any]]: ...
    def memories(self, tenant: str, *, subject: str | None, limit: int) -> list[dict[str, Any]]: ...
    def tenants(self) -> list[dict[str, Any]]: ...
    def forget(self, tenant: str, *, memory_id: str | None, subject: str | None,
               everything: bool, actor: str | None = None) -> dict[str, Any]: ...
    def rebuild(self, tenant: str | None) -> dict[str, Any]: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _found(found: Found) -> dict[str, Any]:
    return {"id": found.memory.memory_id, "text": found.memory.text, "score": round(found.score, 6),
            "expires_at": found.memory.expires_at.isoformat()}


def _change_id() -> str:
    return uuid.uuid4().hex


class LocalMemory:
    """The operations on a store this process holds; redaction happens here, before storing.

    With a `log`, every change is appended to it before the store is touched (a change the log did
    not take is refused, `MemoryLogUnavailable`), so the store can be rebuilt from it; without one
    (a store of its own, as the benchmarks use) nothing is recorded and `rebuild` is refused."""

    def __init__(self, store: MemoryStore, *, log: MemoryLog | None = None, actor: str = "memory") -> None:
        """actor: who asks, recorded in each change (an operation may name its own)."""
        self.store = store
        self.log = log
        self.actor = actor

    def _record(self, change: MemoryChange) -> None:
        if self.log is not None:
            self.log.append(change)

    def opt_in(self, tenant: str, *, ttl_s: int = DEFAULT_TTL_S, actor: str | None = None) -> dict[str, Any]:
        now = _now()
        self._record(ledger.opted_in(tenant, default_ttl_s=ttl_s, actor=actor or self.actor,
                                     change_id=_change_id(), at=now))
        self.store.opt_in(tenant, default_ttl_s=ttl_s, now=now)
        return {"tenant": tenant, "default_ttl_s": ttl_s}

    def opt_out(self, tenant: str, *, actor: str | None = None) -> dict[str, Any]:
        ids = self.store.forget_ids(tenant, everything=True)
        self._record(ledger.forgotten(tenant, scope="opt_out", memory_ids=ids, actor=actor or self.actor,
                                      change_id=_change_id(), at=_now()))
        return {"tenant": tenant, "forgotten": self.store.opt_out(tenant, now=_now())}

    def import_lines(self, tenant: str, lines: Sequence[Mapping[str, Any]], *,
                     actor: str | None = None) -> dict[str, Any]:
        """Store the lines of an import, all or none: every line is checked first."""
        items = []
        for number, line in enumerate(lines, 1):
            try:
                items.append(parse_item(line))
            except InvalidLine as exc:
                raise MemoryRefused(f"line {number}: {exc}") from None
        ttl = self.store.tenant_ttl(tenant)
        if ttl is None:
            raise MemoryRefused(f"tenant {tenant!r} has not opted in to long-term memory; nothing was "
                                f"stored (agentlog memory opt-in --tenant {tenant})")
        from processors.memory.redaction import redactor  # loads Presidio: only where it redacts

        now = _now()
        records = prepare(items, tenant_id=tenant, redactor=redactor(), default_ttl_s=ttl, now=now)
        try:
            self.keep(tenant, records, actor=actor or self.actor, now=now)
        except NotOptedIn as exc:  # opted out meanwhile
            raise MemoryRefused(str(exc)) from None
        return {"tenant": tenant, "stored": len(records), "expired": len(items) - len(records),
                "ids": [r.memory_id for r in records]}

    def search(self, tenant: str, query: str, *, k: int = 10,
               subject: str | None = None) -> list[dict[str, Any]]:
        return [_found(f) for f in self.store.search(tenant, query, k=k, subject=subject, now=_now())]

    def memories(self, tenant: str, *, subject: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
        return [{"id": r.memory_id, "subject": r.subject, "text": r.text,
                 "created_at": r.created_at.isoformat(), "expires_at": r.expires_at.isoformat(),
                 "source": r.source}
                for r in self.store.memories(tenant, subject=subject, now=_now(), limit=limit)]

    def tenants(self) -> list[dict[str, Any]]:
        return [{"tenant": t, "default_ttl_s": ttl, "memories": n}
                for t, ttl, n in self.store.tenants(now=_now())]

    def keep(self, tenant: str, records: Sequence[Any], *, actor: str, now: datetime) -> None:
        """Record and store memories already prepared (an import's, or what a run left)."""
        if not records:
            return
        if not self.store.opted_in(tenant):
            raise NotOptedIn(f"tenant {tenant!r} has not opted in to long-term memory "
                             f"(agentlog memory opt-in --tenant {tenant})")
        self._record(ledger.kept(tenant, records, actor=actor, change_id=_change_id(), at=now))
        self.store.put(tenant, records)

    def forget(self, tenant: str, *, memory_id: str | None = None, subject: str | None = None,
               everything: bool = False, actor: str | None = None) -> dict[str, Any]:
        if sum([memory_id is not None, subject is not None, everything]) != 1:
            raise MemoryRefused("give exactly one of an id, a subject, or everything")
        ids = self.store.forget_ids(tenant, memory_id=memory_id, subject=subject, everything=everything)
        if ids:  # nothing to forget is nothing to record
            scope: ForgetScope = "memory" if memory_id is not None else "subject" if subject is not None \
                else "tenant"
            self._record(ledger.forgotten(tenant, scope=scope, memory_ids=ids, memory_id=memory_id,
                                          subject=subject, actor=actor or self.actor, change_id=_change_id(),
                                          at=_now()))
        return {"tenant": tenant, "forgotten": self.store.forget(tenant, memory_id=memory_id, subject=subject,
                                                                 everything=everything)}

    def rebuild(self, tenant: str | None = None) -> dict[str, Any]:
        """Replace the store's memories (the tenant's, or every tenant's) with the log's: what was
        stored and not forgotten, and not expired by now."""
        if self.log is None:
            raise MemoryRefused("this store has no memory log to be rebuilt from")
        tenants = ledger.replay(self.log.changes(tenant_id=tenant), tenant_id=tenant)
        now = _now()
        self.store.erase(tenant)
        out = []
        for name, held in sorted(tenants.items()):
            live = held.live(now)
            if held.default_ttl_s is not None:
                self.store.opt_in(name, default_ttl_s=held.default_ttl_s, now=now)
                self.store.put(name, live)
            out.append({"tenant": name, "opted_in": held.default_ttl_s is not None,
                        "memories": len(live) if held.default_ttl_s is not None else 0})
        return {"tenants": out}

    def opted_in(self, tenant: str) -> bool:
        return self.store.opted_in(tenant)

    def call(self, op: str, body: Mapping[str, Any]) -> Any:
        """One operation by name with its JSON arguments (what the loopback API receives)."""
        args = dict(body)
        tenant = str(args.pop("tenant", "") or "")
        if op == "tenants":
            return self.tenants()
        if not tenant:
            raise MemoryRefused("a tenant is required")
        if op == "opted_in":
            return self.opted_in(tenant)
        methods: dict[str, Callable[..., Any]] = {
            "opt_in": self.opt_in, "opt_out": self.opt_out, "import_lines": self.import_lines,
            "search": self.search, "memories": self.memories, "forget": self.forget}
        if op == "rebuild":
            return self.rebuild(tenant if tenant != "*" else None)
        method = methods.get(op)
        if method is None:
            raise MemoryRefused(f"no operation {op!r}")
        return method(tenant, **args)


class RemoteMemory:
    """The operations answered by the memory service that owns the store."""

    def __init__(self, settings: Settings, memory: MemorySettings, *, actor: str = "memory") -> None:
        self._settings = settings
        self._port = memory.port
        self._actor = actor

    def _call(self, op: str, *, timeout_s: float = 120.0, **body: Any) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=timeout_s)
        try:
            conn.request("POST", f"/{op}", body=json.dumps(body),
                         headers={"Content-Type": "application/json",
                                  "Authorization": f"Bearer {query_token(self._settings)}"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        finally:
            conn.close()
        if resp.status == 422:
            raise MemoryRefused(answer["error"])
        if resp.status != 200:
            raise RuntimeError(f"the memory service answered {resp.status}: {answer.get('error')}")
        return answer["result"]

    def opt_in(self, tenant: str, *, ttl_s: int, actor: str | None = None) -> dict[str, Any]:
        return dict(self._call("opt_in", tenant=tenant, ttl_s=ttl_s, actor=actor or self._actor))

    def opt_out(self, tenant: str, *, actor: str | None = None) -> dict[str, Any]:
        return dict(self._call("opt_out", tenant=tenant, actor=actor or self._actor))

    def import_lines(self, tenant: str, lines: Sequence[Mapping[str, Any]], *,
                     actor: str | None = None) -> dict[str, Any]:
        return dict(self._call("import_lines", tenant=tenant, lines=list(lines), actor=actor or self._actor))

    def search(self, tenant: str, query: str, *, k: int, subject: str | None) -> list[dict[str, Any]]:
        return list(self._call("search", tenant=tenant, query=query, k=k, subject=subject))

    def memories(self, tenant: str, *, subject: str | None, limit: int) -> list[dict[str, Any]]:
        return list(self._call("memories", tenant=tenant, subject=subject, limit=limit))

    def tenants(self) -> list[dict[str, Any]]:
        return list(self._call("tenants"))

    def opted_in(self, tenant: str, *, timeout_s: float = 120.0) -> bool:
        return bool(self._call("opted_in", tenant=tenant, timeout_s=timeout_s))

    def forget(self, tenant: str, *, memory_id: str | None, subject: str | None,
               everything: bool, actor: str | None = None) -> dict[str, Any]:
        return dict(self._call("forget", tenant=tenant, memory_id=memory_id, subject=subject,
                               everything=everything, actor=actor or self._actor))

    def rebuild(self, tenant: str | None) -> dict[str, Any]:
        return dict(self._call("rebuild", tenant=tenant or "*", timeout_s=600.0))


def owner_alive(settings: Settings, memory: MemorySettings) -> bool:
    """The memory service answers on its port (it then owns the chDB path)."""
    conn = http.client.HTTPConnection("127.0.0.1", memory.port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def memory_opted_in(settings: Settings, tenant: str, *, timeout_s: float = 0.5) -> bool:
    """Whether `tenant` has opted in, as the memory service says within `timeout_s`; False when it
    does not answer (a run is never held up by memory: it goes without)."""
    try:
        return RemoteMemory(settings, MemorySettings()).opted_in(tenant, timeout_s=timeout_s)
    except (OSError, ValueError, KeyError, RuntimeError):
        return False


def open_local(settings: Settings) -> MemoryStore:
    """The store itself: the server's, or chDB under `<home>/memory` (this process then owns it)."""
    if settings.clickhouse_url:
        return MemoryStore.connect(url=settings.clickhouse_url, password=clickhouse_password(settings))
    path = settings.path("memory")
    path.mkdir(parents=True, exist_ok=True)
    return MemoryStore.connect(url=None, chdb_path=str(path))


@contextmanager
def memory_ops(settings: Settings, *, sweep: bool = False, actor: str = "memory") -> Iterator[MemoryOps]:
    """The operations, through the memory service when it owns the local store, else on a store
    opened here (and closed afterwards), recording to the memory log. `sweep`: delete what has
    expired first (local only: the service sweeps on its own). `actor`: who asks, as the memory log
    records it."""
    memory = MemorySettings()
    if not settings.clickhouse_url and owner_alive(settings, memory):
        yield RemoteMemory(settings, memory, actor=actor)
        return
    store = open_local(settings)
    log = MemoryLog(settings)
    try:
        if sweep:
            store.sweep(now=_now())
        yield LocalMemory(store, log=log, actor=actor)
    finally:
        log.close()
        store.close()
