"""The memory log as the truth of long-term memory: the changes each memory operation appends,
and the fold that turns a tenant's changes back into what its store holds. Pure: ids and time
are given."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from processors.memory.records import MemoryRecord
from schemas.memory_log import (
    ForgetScope,
    KeptMemory,
    MemoryChange,
    MemoryForgotten,
    MemoryKept,
    MemoryOptedIn,
)

__all__ = ["opted_in", "kept", "forgotten", "TenantMemory", "replay", "record_of"]


def opted_in(tenant_id: str, *, default_ttl_s: int, actor: str, change_id: str, at: datetime) -> MemoryChange:
    return MemoryChange(change_id=change_id, tenant_id=tenant_id, at=at, actor=actor,
                        body=MemoryOptedIn(default_ttl_s=default_ttl_s))


def kept(tenant_id: str, records: Sequence[MemoryRecord], *, actor: str, change_id: str,
         at: datetime) -> MemoryChange:
    return MemoryChange(change_id=change_id, tenant_id=tenant_id, at=at, actor=actor, body=MemoryKept(
        memories=[KeptMemory(memory_id=r.memory_id, subject=r.subject, text=r.text, created_at=r.created_at,
                   expires_at=r.expires_at, source=r.source, run_id=r.run_id,
                   metadata=json.dumps(dict(r.metadata), sort_keys=True, default=str))
                  for r in records]))


def forgotten(tenant_id: str, *, scope: ForgetScope, memory_ids: Sequence[str], actor: str, change_id: str,
              at: datetime, memory_id: str | None = None, subject: str | None = None) -> MemoryChange:
    return MemoryChange(change_id=change_id, tenant_id=tenant_id, at=at, actor=actor, body=MemoryForgotten(
        scope=scope, memory_id=memory_id, subject=subject, memory_ids=list(memory_ids)))


def record_of(tenant_id: str, memory: KeptMemory) -> MemoryRecord:
    return MemoryRecord(tenant_id=tenant_id, memory_id=memory.memory_id, text=memory.text,
                        subject=memory.subject, created_at=memory.created_at, expires_at=memory.expires_at,
                        source=memory.source, run_id=memory.run_id,
                        metadata=json.loads(memory.metadata or "{}"))


@dataclass
class TenantMemory:
    """What a tenant's store holds after its changes: whether it opted in, and its memories by id."""

    tenant_id: str
    default_ttl_s: int | None = None
    """None: not opted in (never, or opted out)."""
    memories: dict[str, MemoryRecord] = field(default_factory=dict)

    def live(self, now: datetime) -> list[MemoryRecord]:
        """The memories not expired at `now`, by id: an expired one is never stored again."""
        return [m for _, m in sorted(self.memories.items()) if not m.expired(now)]


def _apply(tenant: TenantMemory, change: MemoryChange) -> None:
    match change.body:
        case MemoryOptedIn(default_ttl_s=ttl):
            tenant.default_ttl_s = ttl
        case MemoryKept(memories=memories):
            # The store writes only for an opted-in tenant; the log recorded the write, so it happened.
            for m in memories:
                tenant.memories[m.memory_id] = record_of(tenant.tenant_id, m)
        case MemoryForgotten(scope="memory", memory_id=ident):
            tenant.memories.pop(ident or "", None)
        case MemoryForgotten(scope="subject", subject=subject):
            # The store deleted by subject, whatever was there: so does the fold.
            tenant.memories = {k: m for k, m in tenant.memories.items() if m.subject != subject}
        case MemoryForgotten(scope="tenant"):
            tenant.memories = {}
        case MemoryForgotten(scope="opt_out"):
            tenant.memories, tenant.default_ttl_s = {}, None
        case MemoryForgotten(memory_ids=ids):  # a scope this fold does not know: what was deleted
            for ident in ids:
                tenant.memories.pop(ident, None)


def replay(changes: Iterable[MemoryChange], *, tenant_id: str | None = None) -> dict[str, TenantMemory]:
    """Fold changes (in log order per tenant) into each tenant's memory; only `tenant_id`'s when given."""
    out: dict[str, TenantMemory] = {}
    for change in changes:
        if tenant_id is not None and change.tenant_id != tenant_id:
            continue
        _apply(out.setdefault(change.tenant_id, TenantMemory(change.tenant_id)), change)
    return out
