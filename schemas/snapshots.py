"""Python mirrors of the snapshot records in `schemas/avro/` (a unit test proves they agree).

A processor's snapshot topic holds, per events partition, the state of its live runs
(`RunSnapshot`, keyed by run id), a `Checkpoint` (every snapshot covers the events before its
offset) and, for the orchestrator, `FinishedRunsPage`s: the runs that ended and left memory.
"""

from __future__ import annotations

from typing import get_args

from schemas.events import (
    ApprovalRequested,
    Long,
    Millis,
    ObservationCaptured,
    PlanStep,
    Record,
    RunMetrics,
    ToolProposed,
)

__all__ = ["OpenRequestSnapshot", "RunSnapshot", "Checkpoint", "FinishedRunsPage", "Snapshot", "Body",
           "BODY_TYPES"]


class OpenRequestSnapshot(Record):
    event: bytes
    asked_at: Millis
    attempt: int
    timeout_s: float | None = None
    refusal: str | None = None


class RunSnapshot(Record):
    run_id: str
    tenant_id: str
    route: str
    text: str
    idempotency_key: str
    started_at: Millis
    seq: Long
    status: str
    last: bytes | None = None
    steps: list[PlanStep]
    budget_usd: float
    step_index: int
    open_requests: list[OpenRequestSnapshot]
    proposed: ToolProposed | None = None
    proposed_event_id: str | None = None
    parked: ApprovalRequested | None = None
    parked_event_id: str | None = None
    observations: list[ObservationCaptured]
    metrics: RunMetrics
    answer: str | None = None
    failure: str | None = None
    stopped: str | None = None
    active_s: float
    active_since: Millis | None = None
    traceparent: str | None = None
    parked_at: Millis | None = None
    memory: bool = False
    memory_subject: str | None = None
    memories: list[str] = []  # noqa: RUF012 - pydantic copies a default per instance; Avro states it


class Checkpoint(Record):
    live_runs: int


class FinishedRunsPage(Record):
    page: int
    run_digests: bytes


Body = RunSnapshot | Checkpoint | FinishedRunsPage

# Order matters: it is the order of the Avro union in agentlog.Snapshot.avsc.
BODY_TYPES: dict[str, type[Record]] = {t.__name__: t for t in get_args(Body)}


class Snapshot(Record):
    service: str
    partition: int
    covers: Long
    written_at: Millis
    body: Body
