"""The memory processor's answers to a run: what it was given (MemoryRetrieved) and what it left
(MemoryStored). Pure: the service hands in what the store found or kept, or why it could not.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.memory.records import MemoryRecord
from processors.memory.retrieval import RETRIEVER_VERSION
from schemas.events import MemoryRetrieved, MemoryStored, RetrievedMemory, RunStarted, StoredMemory

__all__ = ["ACTOR", "RETRIEVED_K", "retrieved", "not_retrieved", "stored", "not_stored"]

ACTOR = "memory"
RETRIEVED_K = 5
"""Memories a run is given at most: the best ranked (a planner's prompt has room for few)."""


def retrieved(started: RunStarted, found: Sequence[tuple[MemoryRecord, float]]) -> MemoryRetrieved:
    """The memories found for a run's request, best first, as they are stored (redacted)."""
    return MemoryRetrieved(
        status="ok", text=started.text, route=started.route, retriever_version=RETRIEVER_VERSION,
        memories=[RetrievedMemory(memory_id=m.memory_id, text=m.text, score=round(score, 6),
                                  expires_at=m.expires_at) for m, score in found[:RETRIEVED_K]])


def not_retrieved(started: RunStarted, reason: str) -> MemoryRetrieved:
    """No memories, because the store could not answer (or the tenant opted out meanwhile)."""
    return MemoryRetrieved(status="unavailable", text=started.text, route=started.route, memories=[],
                           retriever_version=RETRIEVER_VERSION, reason=reason)


def stored(records: Sequence[MemoryRecord]) -> MemoryStored:
    """What a run left, as stored (an empty list: nothing worth keeping)."""
    return MemoryStored(status="ok", memories=[StoredMemory(memory_id=r.memory_id, subject=r.subject,
                                                            text=r.text, expires_at=r.expires_at)
                                               for r in records])


def not_stored(reason: str) -> MemoryStored:
    return MemoryStored(status="unavailable", memories=[], reason=reason)
