"""The gateway's wire contract: request and response bodies, the one error shape, and the
errors each operation declares in the OpenAPI document."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = ["MAX_BODY_BYTES", "error_body", "Text", "FreeText", "Decision", "Cancel", "RunRequest",
           "ErrorDetail", "ErrorBody", "RunAccepted", "EventDoc", "RunView", "EVENT_FRAME",
           "CancelAccepted", "Approval", "DecisionAccepted", "errors", "READ_ERRORS", "WRITE_ERRORS",
           "RunId", "MetricsRow", "ReplayDeltaRow", "PROMETHEUS_TEXT"]

MAX_BODY_BYTES = 64 * 1024


def error_body(status: int, message: str) -> dict[str, Any]:
    """The one shape of every error the gateway answers."""
    return {"error": {"status": status, "message": message}}


# Text a person or client gave that the log would keep: NUL bytes break C consumers and most
# stores downstream, and a blank name or request is a client bug, not a request.
def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("bad_text", "must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("bad_text", "must be valid Unicode (no lone surrogates)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("bad_text", "must not be blank")
    return _no_nul(value)


_TEXT_PATTERN = r"^[^\u0000]*\S[^\u0000]*$"
Text = Annotated[str, AfterValidator(_not_blank)]
FreeText = Annotated[str, AfterValidator(_no_nul)]


def _text_field(*, max_length: int, description: str, default: Any = ...) -> Any:
    # minLength and the pattern are for the document (and the clients generated from it); the
    # validator enforces them, so that a blank value is a 400 like a NUL byte, not a 422.
    return Field(default, max_length=max_length, description=description,
                 json_schema_extra={"minLength": 1, "pattern": _TEXT_PATTERN})


class Decision(BaseModel):
    """Body of POST /v1/runs/{run_id}/approve and /reject."""

    approver: Text = _text_field(max_length=200, description="Who decides, for the audit trail.")
    reason: FreeText = Field(default="", max_length=2_000)


class Cancel(BaseModel):
    """Body of POST /v1/runs/{run_id}/cancel."""

    reason: FreeText = Field(default="cancelled over HTTP", max_length=2_000)
    requested_by: Text = _text_field(max_length=200, default="api", description="Who cancels.")


class RunRequest(BaseModel):
    """Body of POST /v1/runs."""

    text: Text = _text_field(max_length=10_000, description="What the agent should do.")
    tenant_id: Text | None = _text_field(max_length=128, default=None,
                                         description="Must be the key's tenant when given.")
    route: Text = _text_field(max_length=128, default="default",
                              description="A route the models file declares.")
    subject: FreeText | None = Field(
        default=None, min_length=1, max_length=256,
        description="Whom or what the run is about: its memories are retrieved for this subject only, "
                    "and what it leaves is stored under it (a tenant that opted in).")


class ErrorDetail(BaseModel):
    status: int = Field(description="The HTTP status, again.")
    message: str = Field(description="What was wrong, for a person.")


class ErrorBody(BaseModel):
    """Every error the gateway answers."""

    error: ErrorDetail


class RunAccepted(BaseModel):
    run_id: str
    status: Literal["accepted"]
    tenant_id: str


class EventDoc(BaseModel):
    """One event of a run's timeline."""

    seq: int
    event_type: str
    actor: str
    event_time: str
    event_id: str
    causation_id: str | None
    payload: dict[str, Any]
    summary: str = Field(description="What happened, in one line, as `agentlog runs show` prints it.")


class RunView(BaseModel):
    run_id: str
    status: str
    trace_id: str | None = Field(None, description="The run's OpenTelemetry trace id (W3C, hex).")
    events: list[EventDoc]


PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {200: {
    "description": "This process's metrics in the Prometheus text format (no key needed, like /healthz).",
    "content": {"text/plain": {"schema": {"type": "string"}}}}}


EVENT_FRAME = {
    "type": "object", "required": ["event", "data"],
    "description": "One server-sent event: a run's event (`id` its seq, `event` its type), then "
                   "`end` with the run's status, or `error` if the run cannot be read any more.",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"anyOf": [
            EventDoc.model_json_schema(),
            {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
            {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["status", "message"],
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
        ]}},
    },
}


class CancelAccepted(BaseModel):
    run_id: str
    status: Literal["cancel_requested"]


class Approval(BaseModel):
    """A call waiting for a person."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    tenant_id: str
    step_id: str
    tool: str
    input: dict[str, Any]
    rule: str | None
    reason: str
    since: datetime
    expires_at: datetime


class DecisionAccepted(BaseModel):
    run_id: str
    step_id: str | None
    decision: Literal["approved", "rejected"]


class MetricsRow(BaseModel):
    """The metrics of one group of runs (README, "Metrics"); only the group keys asked are present."""

    tenant: str | None = Field(default=None, description="Group key: the tenant (always the key's).")
    route: str | None = Field(default=None, description="Group key: the route the runs started on.")
    model: str | None = Field(default=None, description="Group key: the model that planned the runs.")
    day: str | None = Field(default=None, description="Group key: the day (UTC) the runs started.")
    runs: int
    successes: int = Field(description="Runs that ended in RunCompleted with nothing that spoils a success.")
    success_rate: float | None = Field(description="successes / runs; null without runs.")
    violations: int = Field(description="ToolRejected plus ApprovalRequested events.")
    violation_rate_per_100: float | None = Field(description="Violations per 100 runs; null without runs.")
    cost_usd: float = Field(description="What all the runs cost (model tokens and tools).")
    cost_per_success_usd: float | None = Field(description="cost_usd / successes; null without a success.")
    ttfa_p50_ms: float | None = Field(description="Median time from RunStarted to the first ToolApproved.")
    ttfa_p95_ms: float | None = Field(description="Its 95th percentile (linear between closest ranks).")


class ReplayDeltaRow(BaseModel):
    """The replay delta of one candidate on one day (UTC)."""

    candidate: str
    day: str
    replays: int
    runs: int = Field(description="Runs scored, over the day's replays.")
    baseline_quality: float
    candidate_quality: float
    replay_delta: float = Field(description="candidate_quality - baseline_quality.")


_WHY = {
    400: "Not HTTP, not JSON, a NUL byte, blank text or an empty Idempotency-Key.",
    401: "No API key, or one the gateway does not know.",
    403: "The key lacks the role, or the body names another tenant.",
    404: "No such run; a run of another tenant is answered the same way.",
    408: "The body did not arrive within the read timeout.",
    409: "The request conflicts with the run's state.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
    422: "A field or query parameter is invalid; the message names it.",
    429: "Too many open event streams, for this key or in all; try again after Retry-After seconds.",
    503: "The event log (or the analytics store) does not answer; try again.",
}


def errors(*codes: int, json_ref: bool = False, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses, each with the error schema (`why`: `s409=...`).

    json_ref: name the schema rather than the model, for an operation whose own media type is
    not JSON (FastAPI would file the model under it)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        schema: dict[str, Any] = (
            {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            if json_ref else {"model": ErrorBody})
        out[code] = {**schema, "description": why.get(f"s{code}", _WHY[code])}
    if 429 in out:
        out[429]["headers"] = {"Retry-After": {"description": "Seconds to wait.",
                                               "schema": {"type": "integer"}}}
    if 401 in out:
        out[401]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return out


READ_ERRORS = (400, 401, 403, 404, 422, 503)
WRITE_ERRORS = (400, 401, 403, 404, 408, 409, 413, 422, 503)
RunId = Annotated[str, Path(min_length=1, max_length=128, description="The run's id.")]
