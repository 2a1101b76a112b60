"""What a finished run leaves in long-term memory, and what a starting run asks of it. Pure: the
memory processor calls these with a run's recorded events.

Kept from a run that completed with something done (outcome `succeeded` or `partial`): the
request and the final answer as one memory, so a later question worded like the request finds
the answer beside it; and a fact the user asked to keep ("remember that …") on its own. Nothing
is kept from a run that failed, was refused or cancelled: a refusal or an error is no knowledge
about the tenant, and keeping it would teach later runs to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from processors.memory.records import MAX_TEXT, ImportItem
from schemas.events import Event, ResponseFinalized, RunCompleted, RunStarted

__all__ = ["memories_of_run", "memories_of_finished", "retrieval_query", "KEPT_OUTCOMES"]

KEPT_OUTCOMES = frozenset({"succeeded", "partial"})
_REMEMBER = re.compile(r"^\s*(?:please\s+)?(?:remember|note|keep in mind)\s*(?:that|:)?\s+(?P<fact>.+)$",
                       re.IGNORECASE | re.DOTALL)


def retrieval_query(started: RunStarted) -> str:
    """The text the memories of a run's tenant are ranked against: the request itself."""
    return started.text[:MAX_TEXT]


def memories_of_run(events: Sequence[Event]) -> list[ImportItem]:
    """The memories a finished run leaves (not yet redacted: the caller redacts before storing)."""
    started = next((e.payload for e in events if isinstance(e.payload, RunStarted)), None)
    completed = next((e.payload for e in events if isinstance(e.payload, RunCompleted)), None)
    answer = next((e.payload.text for e in reversed(events) if isinstance(e.payload, ResponseFinalized)),
                  None)
    if started is None or completed is None:
        return []
    return memories_of_finished(run_id=events[0].run_id, request=started.text, answer=answer,
                                outcome=completed.outcome, subject=started.memory_subject or "")


def memories_of_finished(*, run_id: str, request: str, answer: str | None, outcome: str,
                         subject: str = "") -> list[ImportItem]:
    """The memories of a run that ends with `outcome` and `answer` (known once its response is
    final, before RunCompleted is appended), about `subject`."""
    if outcome not in KEPT_OUTCOMES:
        return []
    items: list[ImportItem] = []
    fact = _REMEMBER.match(request)
    if fact:
        items.append(ImportItem(text=fact.group("fact").strip()[:MAX_TEXT], subject=subject,
                                metadata={"kind": "fact", "run_id": run_id}))
    if answer:
        text = f"Asked: {request.strip()}\nAnswered: {answer.strip()}"
        items.append(ImportItem(text=text[:MAX_TEXT], subject=subject,
                                metadata={"kind": "exchange", "run_id": run_id}))
    return items
