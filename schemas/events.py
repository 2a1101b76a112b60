"""Python mirrors of the Avro contract in `schemas/avro/` (a unit test proves they agree).

`Event` is the envelope; its `payload` is one of `PAYLOAD_TYPES`, named by `event_type`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, SkipValidation, model_validator

__all__ = [
    "Long", "Millis", "Record", "ModelCall", "RunMetrics", "PlanStep", "RunRequested", "RunStarted",
    "PlanGenerated", "PlanRejected", "ToolProposed", "ToolApproved", "ToolRejected",
    "ApprovalRequested", "ApprovalGranted", "ApprovalDenied", "ApprovalExpired", "ToolExecuted",
    "ObservationCaptured", "ResponseRequested", "ResponseDrafted", "ResponseFinalized",
    "BudgetExceeded", "StepTimedOut", "RequestRetried", "RunTimedOut", "RunCancelled",
    "RunFailed", "RunCompleted", "RetrievedMemory", "StoredMemory", "MemoryRetrieved", "MemoryStored",
    "Payload", "PAYLOAD_TYPES", "MEMORY_STATUSES",
    "TERMINAL_TYPES", "SPOILER_TYPES", "VIOLATION_TYPES", "Event",
]


class _AvroLong:
    """Marks an int field that Avro stores as `long` (plain ints are Avro `int`)."""


Long = Annotated[int, _AvroLong()]


def _to_millis(value: datetime) -> datetime:
    # Avro's timestamp-millis keeps milliseconds in UTC; normalising here makes a decoded
    # event equal to the one that was encoded.
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


Millis = Annotated[datetime, AfterValidator(_to_millis)]


class Record(BaseModel):
    """Base of every mirrored Avro record."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelCall(Record):
    provider: str
    model: str
    prompt_version: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    cost_usd: float


class RunMetrics(Record):
    tool_calls: int
    tickets_created: int
    emails_sent: int
    cost_usd: float


class PlanStep(Record):
    id: str
    objective: str
    tool: str
    input_json: str
    success_criteria: str


class RunRequested(Record):
    text: str
    route: str = "default"
    idempotency_key: str
    requested_by: str | None = None
    traceparent: str | None = None
    memory: bool = False
    memory_subject: str | None = None


class RunStarted(Record):
    text: str
    route: str
    idempotency_key: str
    requested_by: str | None = None
    traceparent: str | None = None
    memory: bool = False
    memory_subject: str | None = None


class PlanGenerated(Record):
    max_steps: int
    budget_usd: float
    steps: list[PlanStep]
    stop_conditions: list[str]
    plan_json: str
    model_call: ModelCall


class PlanRejected(Record):
    errors: list[str]
    raw_output: str
    model_call: ModelCall


class ToolProposed(Record):
    step_id: str
    tool: str
    input_json: str
    objective: str
    route: str = "default"
    idempotency_key: str
    run_metrics: RunMetrics


class ToolApproved(Record):
    step_id: str
    tool: str
    input_json: str
    idempotency_key: str
    rule: str | None = None
    reason: str
    policy_version: str
    approved_by: str | None = None


class ToolRejected(Record):
    step_id: str
    tool: str
    rule: str | None = None
    reason: str
    policy_version: str
    rejected_by: str | None = None


class ApprovalRequested(Record):
    step_id: str
    tool: str
    input_json: str
    rule: str | None = None
    reason: str
    policy_version: str
    expires_at: Millis


class ApprovalGranted(Record):
    step_id: str
    approver: str
    reason: str = ""


class ApprovalDenied(Record):
    step_id: str
    approver: str
    reason: str = ""


class ApprovalExpired(Record):
    step_id: str


class ToolExecuted(Record):
    step_id: str
    tool: str
    status: str
    output_json: str | None = None
    error: str | None = None
    duration_ms: int
    cost_usd: float


class ObservationCaptured(Record):
    step_id: str
    tool: str
    status: str
    summary: str


class ResponseRequested(Record):
    request_text: str
    observations: list[ObservationCaptured]
    memories: list[str] = []


class ResponseDrafted(Record):
    text: str
    model_call: ModelCall


class ResponseFinalized(Record):
    text: str
    model_call: ModelCall | None = None


class BudgetExceeded(Record):
    limit: str
    limit_value: float
    spent: float
    reason: str


class StepTimedOut(Record):
    request_id: str
    request_type: str
    attempt: int
    timeout_s: float


class RequestRetried(Record):
    request_id: str
    request_type: str
    attempt: int
    timeout_s: float
    request_json: str


class RunTimedOut(Record):
    limit_s: float
    active_s: float


class RunCancelled(Record):
    reason: str
    requested_by: str | None = None
    cost_usd: float = 0.0


class RunFailed(Record):
    stage: str
    reason: str
    cost_usd: float = 0.0


class RunCompleted(Record):
    outcome: str
    tool_calls: int
    cost_usd: float
    duration_ms: Long


MEMORY_STATUSES = frozenset({"ok", "unavailable", "timeout"})
"""How a memory step ended: answered, the store could not answer, or no answer in time."""


class RetrievedMemory(Record):
    memory_id: str
    text: str
    score: float
    expires_at: Millis


class StoredMemory(Record):
    memory_id: str
    subject: str = ""
    text: str
    expires_at: Millis


class MemoryRetrieved(Record):
    status: str
    text: str
    route: str
    memories: list[RetrievedMemory]
    retriever_version: str = ""
    reason: str | None = None


class MemoryStored(Record):
    status: str
    memories: list[StoredMemory]
    reason: str | None = None


Payload = (
    RunRequested | RunStarted | PlanGenerated | PlanRejected | ToolProposed | ToolApproved
    | ToolRejected | ApprovalRequested | ApprovalGranted | ApprovalDenied | ApprovalExpired
    | ToolExecuted | ObservationCaptured | ResponseRequested | ResponseDrafted | ResponseFinalized
    | BudgetExceeded | StepTimedOut | RequestRetried | RunTimedOut | RunCancelled | RunFailed
    | RunCompleted | MemoryRetrieved | MemoryStored
)

# Order matters: it is the order of the Avro union in agentlog.Event.avsc.
PAYLOAD_TYPES: dict[str, type[Record]] = {t.__name__: t for t in get_args(Payload)}

TERMINAL_TYPES = frozenset({"RunCompleted", "RunFailed", "RunCancelled"})

SPOILER_TYPES = frozenset({"PlanRejected", "BudgetExceeded", "ToolRejected", "ApprovalDenied",
                           "ApprovalExpired"})
"""A run succeeds when it ends in RunCompleted with none of these in it (no fallback, no person
stopping it)."""

VIOLATION_TYPES = frozenset({"ToolRejected", "ApprovalRequested"})
"""Policy violations: the denied or escalated actions."""


class Event(Record):
    """The envelope every record of `agentlog.events` and `agentlog.inbox` carries."""

    run_id: str
    seq: Long = 0
    event_id: str
    causation_id: str | None = None
    tenant_id: str
    event_type: str
    event_time: Millis
    actor: str
    payload: Annotated[Payload, SkipValidation]

    @model_validator(mode="before")
    @classmethod
    def _typed_payload(cls, data: Any) -> Any:
        # Payload types can share a shape (ApprovalGranted/ApprovalDenied), so the
        # event_type names the type instead of letting a union guess.
        if isinstance(data, dict):
            kind = data.get("event_type")
            model = PAYLOAD_TYPES.get(kind) if isinstance(kind, str) else None
            if model is None:
                raise ValueError(f"unknown event_type {kind!r}")
            payload = data.get("payload")
            if not isinstance(payload, model):
                data = {**data, "payload": model.model_validate(payload)}
        return data

    @classmethod
    def of(cls, payload: Record, **envelope: Any) -> Event:
        """An event carrying `payload`; `event_type` follows from the payload's type."""
        return cls(event_type=type(payload).__name__, payload=payload, **envelope)

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_TYPES
