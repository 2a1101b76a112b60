"""A replay dataset: recorded runs, one JSON object a line, each with every event of its run.

The line format (`agentlog.run/1`), as `agentlog export` writes it:

    {"format": "agentlog.run/1", "run_id": "…", "tenant_id": "…", "route": "default",
     "text": "what was asked", "status": "completed", "answer": "what the user read",
     "reference": {"answer": "…", "must_contain": ["…"]},        (optional, for scoring)
     "events": [{"seq": 1, "event_type": "RunStarted", "actor": "orchestrator",
                 "event_time": "2026-11-26T09:00:00+00:00", "event_id": "…",
                 "causation_id": "…", "payload": {…}}, …]}

Each event is shaped as `agentlog runs show --json` prints it, so that output (one run per line)
is a dataset too, and the recorded planner reads datasets as they are. Only `run_id`, `tenant_id`
and `events` are required; the rest is read from the events when it is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from processors.state import fold
from schemas.events import Event, RunStarted

__all__ = ["FORMAT", "Reference", "RecordedRun", "DatasetError", "event_doc", "run_doc",
           "run_from_doc", "parse_line", "read_lines"]

FORMAT = "agentlog.run/1"
"""The `format` of every line `export` writes."""


class DatasetError(ValueError):
    """A line that is no recorded run; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Reference:
    """What a good answer to the run looks like, when the dataset says so."""

    answer: str | None = None
    """A reference answer, compared by word overlap."""
    must_contain: tuple[str, ...] = ()
    """Phrases a good answer contains (case-insensitive)."""


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """One run as it was recorded."""

    run_id: str
    tenant_id: str
    events: tuple[Event, ...]
    """In seq order."""
    reference: Reference | None = None

    @property
    def started(self) -> RunStarted | None:
        first = self.events[0].payload if self.events else None
        return first if isinstance(first, RunStarted) else None

    @property
    def route(self) -> str:
        return self.started.route if self.started else "default"

    @property
    def text(self) -> str:
        return self.started.text if self.started else ""


def event_doc(e: Event) -> dict[str, Any]:
    """One event as a dataset holds it (the shape of `runs show --json`)."""
    return {"seq": e.seq, "event_type": e.event_type, "actor": e.actor,
            "event_time": e.event_time.isoformat(), "event_id": e.event_id,
            "causation_id": e.causation_id, "payload": e.payload.model_dump(mode="json")}


def run_doc(run_id: str, events: Iterable[Event], *,
            reference: Reference | None = None) -> dict[str, Any]:
    """A dataset line for `events` (one run's, any order)."""
    ordered = sorted(events, key=lambda e: e.seq)
    state = fold(ordered)
    started = ordered[0].payload if ordered else None
    doc: dict[str, Any] = {
        "format": FORMAT, "run_id": run_id,
        "tenant_id": ordered[0].tenant_id if ordered else "",
        "route": started.route if isinstance(started, RunStarted) else None,
        "text": started.text if isinstance(started, RunStarted) else None,
        "status": state.status if state else "unknown",
        "answer": state.answer if state else None,
    }
    if reference is not None:
        doc["reference"] = {"answer": reference.answer, "must_contain": list(reference.must_contain)}
    doc["events"] = [event_doc(e) for e in ordered]
    return doc


def run_from_doc(doc: Mapping[str, Any]) -> RecordedRun:
    """A run from its dataset object; DatasetError says what does not fit."""
    run_id, tenant_id, raw = doc.get("run_id"), doc.get("tenant_id"), doc.get("events")
    if not isinstance(run_id, str) or not run_id:
        raise DatasetError("no run_id")
    if not isinstance(raw, list):
        raise DatasetError(f"run {run_id}: 'events' is not a list")
    events = []
    for stored in raw:
        if not isinstance(stored, dict):
            raise DatasetError(f"run {run_id}: an event is not an object")
        payload = stored.get("payload")
        item = stored
        try:
            if isinstance(payload, str):  # as ClickHouse stores it
                item = {**stored, "payload": json.loads(payload)}
            events.append(Event.model_validate(
                {**item, "run_id": run_id, "tenant_id": item.get("tenant_id") or tenant_id}))
        except ValidationError as exc:  # before ValueError: it is one, but a verbose one
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<event>'}: {e['msg']}"
                                 for e in exc.errors())
            raise DatasetError(f"run {run_id} seq {item.get('seq')}: {problems}") from None
        except ValueError as exc:  # a payload stored as text that is not JSON
            raise DatasetError(f"run {run_id} seq {item.get('seq')}: {exc}") from None
    events.sort(key=lambda e: e.seq)
    return RecordedRun(run_id, events[0].tenant_id if events else str(tenant_id or ""),
                       tuple(events), _reference(doc.get("reference"), run_id))


def _reference(raw: object, run_id: str) -> Reference | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Reference(answer=raw)
    if not isinstance(raw, dict) or not set(raw) <= {"answer", "must_contain"}:
        raise DatasetError(f"run {run_id}: 'reference' is an answer or "
                           '{"answer": …, "must_contain": […]}')
    phrases = raw.get("must_contain") or []
    if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
        raise DatasetError(f"run {run_id}: reference.must_contain is a list of strings")
    answer = raw.get("answer")
    return Reference(answer=answer if isinstance(answer, str) else None, must_contain=tuple(phrases))


def parse_line(line: str, *, number: int = 0) -> RecordedRun | None:
    """The run on one dataset line; None for a blank line."""
    if not line.strip():
        return None
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise DatasetError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"line {number}: not a JSON object")
    try:
        return run_from_doc(doc)
    except DatasetError as exc:
        raise DatasetError(f"line {number}: {exc}") from None


def read_lines(lines: Iterable[str]) -> Iterator[RecordedRun]:
    """Runs from dataset lines, one at a time (a dataset need not fit in memory)."""
    for n, line in enumerate(lines, 1):
        run = parse_line(line, number=n)
        if run is not None:
            yield run
