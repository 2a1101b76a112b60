"""Python mirrors of the memory log's records in `schemas/avro/` (a unit test proves they agree).

The memory log (`agentlog.memory`, keyed by tenant) says what long-term memory was given and what
it lost: a `MemoryChange` per operation, whose body is a tenant opting in (`MemoryOptedIn`),
memories stored (`MemoryKept`: an import, or what a run left), or memories forgotten
(`MemoryForgotten`: one, a subject, the whole tenant, or opting out). The store is a projection
of it: folding a tenant's changes in order rebuilds the tenant's memories.

A run's step is recorded in its own timeline too (the events' `MemoryStored`, with a status);
the log repeats what was stored, so a rebuild reads one topic.
"""

from __future__ import annotations

from typing import Literal, get_args

from schemas.events import Long, Millis, Record

__all__ = ["KeptMemory", "MemoryOptedIn", "MemoryKept", "MemoryForgotten", "MemoryChangeBody",
           "MEMORY_CHANGE_TYPES", "MemoryChange", "ForgetScope", "FORGET_SCOPES"]

ForgetScope = Literal["memory", "subject", "tenant", "opt_out"]
FORGET_SCOPES: tuple[str, ...] = get_args(ForgetScope)


class KeptMemory(Record):
    memory_id: str
    subject: str
    text: str
    created_at: Millis
    expires_at: Millis
    source: str
    run_id: str
    metadata: str


class MemoryOptedIn(Record):
    default_ttl_s: Long


class MemoryKept(Record):
    memories: list[KeptMemory]


class MemoryForgotten(Record):
    scope: str
    memory_id: str | None
    subject: str | None
    memory_ids: list[str]


MemoryChangeBody = MemoryOptedIn | MemoryKept | MemoryForgotten

# Order matters: it is the order of the Avro union in agentlog.MemoryChange.avsc.
MEMORY_CHANGE_TYPES: dict[str, type[Record]] = {t.__name__: t for t in get_args(MemoryChangeBody)}


class MemoryChange(Record):
    change_id: str
    tenant_id: str
    at: Millis
    actor: str
    body: MemoryChangeBody

    @property
    def kind(self) -> str:
        return type(self.body).__name__
