"""What a run's spans say, from its events: pure, so every process names and fills them alike.

A worker turns the answer it just produced into the span of the work behind it (`answer_span`:
a model call, a policy decision, a tool call); the orchestrator turns the events it commits into
the spans only it can see whole (`log_span`: the run itself, a person's wait on an approval, a
request nobody answered in time). Names and attributes follow the OpenTelemetry GenAI semantic
conventions (`gen_ai.*`; the guardrail span as proposed for them: `gen_ai.security.*`); what they
do not name is `agentlog.*`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from processors.state import RunState
from schemas.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    MemoryRetrieved,
    MemoryStored,
    ModelCall,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepTimedOut,
    ToolApproved,
    ToolExecuted,
    ToolRejected,
)

__all__ = ["SpanSpec", "Attributes", "answer_span", "log_span", "parse_traceparent", "new_traceparent",
           "trace_id_of", "grader_span", "log_spans", "AGENT_NAME"]

AGENT_NAME = "agentlog"

Attributes = dict[str, str | int | float | bool]


@dataclass(frozen=True)
class SpanSpec:
    """One span to export: a child of the run's root span unless `root`."""

    name: str
    start: datetime
    end: datetime
    attributes: Attributes = field(default_factory=dict)
    kind: str = "internal"
    """"internal" or "client" (a call to a model provider)."""
    error_type: str | None = None
    root: bool = False
    """The run's own span: its trace and span id are the ones recorded in RunStarted."""


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, span id) in hex of a W3C `traceparent` (version 00), or None if it is not one."""
    parts = (value or "").strip().split("-")
    if [len(part) for part in parts] != [2, 32, 16, 2] or parts[0] != "00":
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
        int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return parts[1].lower(), parts[2].lower()


def new_traceparent() -> str:
    """A fresh W3C trace context for a run's root span (random trace and span ids, sampled)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(events: list[Event]) -> str | None:
    """The trace id of the run whose events begin with `events[0]` (None if none was recorded)."""
    first = events[0].payload if events else None
    ids = parse_traceparent(first.traceparent) if isinstance(first, RunStarted) else None
    return ids[0] if ids else None


def _run_attributes(run_id: str, tenant_id: str) -> Attributes:
    return {"gen_ai.conversation.id": run_id, "agentlog.run_id": run_id, "agentlog.tenant_id": tenant_id}


def _chat(answer: Event, call: ModelCall, *, started: datetime, ended: datetime) -> SpanSpec:
    attributes = _run_attributes(answer.run_id, answer.tenant_id) | {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.model, "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens, "agentlog.cost_usd": call.cost_usd,
        "agentlog.prompt_version": call.prompt_version, "agentlog.model_latency_ms": call.latency_ms,
        "agentlog.answer": answer.event_type,
    }
    error = "PlanRejected" if answer.event_type == "PlanRejected" else None
    return SpanSpec(f"chat {call.model}", started, ended, attributes, kind="client", error_type=error)


def _guardrail(answer: Event, *, started: datetime, ended: datetime) -> SpanSpec:
    p = answer.payload
    assert isinstance(p, ToolApproved | ToolRejected | ApprovalRequested)
    decision = {"ToolApproved": "allow", "ToolRejected": "deny"}.get(answer.event_type, "require_approval")
    attributes = _run_attributes(answer.run_id, answer.tenant_id) | {
        "gen_ai.operation.name": "apply_guardrail", "gen_ai.guardrail.name": "agentlog policy",
        "gen_ai.security.target.type": "tool_call", "gen_ai.security.target.id": p.step_id,
        "gen_ai.tool.name": p.tool, "gen_ai.security.decision.type": decision,
        "gen_ai.security.decision.reason": p.reason, "gen_ai.security.policy.version": p.policy_version,
        "agentlog.policy.rule": p.rule or "(default)",
    }
    return SpanSpec(f"apply_guardrail {p.tool}", started, ended, attributes)


def _tool(answer: Event, p: ToolExecuted, *, started: datetime, ended: datetime,
          tool_io: bool) -> SpanSpec:
    attributes = _run_attributes(answer.run_id, answer.tenant_id) | {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": p.tool,
        "gen_ai.tool.call.id": f"{answer.run_id}/{p.step_id}", "gen_ai.tool.type": "function",
        "agentlog.tool.status": p.status, "agentlog.tool.duration_ms": p.duration_ms,
        "agentlog.cost_usd": p.cost_usd,
    }
    if tool_io and p.output_json is not None:
        attributes["gen_ai.tool.call.result"] = p.output_json
    error = None if p.status == "ok" else ("timeout" if p.status == "timeout" else p.status)
    return SpanSpec(f"execute_tool {p.tool}", started, ended, attributes, error_type=error)


def _memory(answer: Event, p: MemoryRetrieved | MemoryStored, *, started: datetime,
            ended: datetime) -> SpanSpec:
    searched = isinstance(p, MemoryRetrieved)
    attributes = _run_attributes(answer.run_id, answer.tenant_id) | {
        "gen_ai.operation.name": "search_memory" if searched else "store_memory",
        "gen_ai.data_source.id": f"memory:{answer.tenant_id}", "agentlog.memory.status": p.status,
        "agentlog.memory.count": len(p.memories),
    }
    if isinstance(p, MemoryRetrieved):
        attributes["agentlog.memory.retriever_version"] = p.retriever_version
    error = None if p.status == "ok" else p.status
    name = "search_memory" if searched else "store_memory"
    return SpanSpec(name, started, ended, attributes, error_type=error)


def answer_span(asked: Event, answer: Event, *, started: datetime, ended: datetime,
                tool_io: bool = False) -> SpanSpec | None:
    """The span of the work a worker did between `started` and `ended` to answer `asked`, or
    None when the answer records no model call, policy decision or tool call.

    tool_io: put the tool's input and result on its span (off by default: they may hold what
    must not leave the log).
    """
    p = answer.payload
    call = getattr(p, "model_call", None)
    if isinstance(call, ModelCall):
        return _chat(answer, call, started=started, ended=ended)
    if isinstance(p, ToolApproved | ToolRejected | ApprovalRequested) and asked.event_type == "ToolProposed":
        return _guardrail(answer, started=started, ended=ended)
    if isinstance(p, MemoryRetrieved | MemoryStored):
        return _memory(answer, p, started=started, ended=ended)
    if isinstance(p, ToolExecuted):
        span = _tool(answer, p, started=started, ended=ended, tool_io=tool_io)
        arguments = getattr(asked.payload, "input_json", None)
        if tool_io and isinstance(arguments, str):
            span.attributes["gen_ai.tool.call.arguments"] = arguments
        return span
    return None


def log_spans(before: RunState | None, appended: Sequence[Event], after: RunState | None) -> list[SpanSpec]:
    """The spans closed by the events one inbox record appended (`appended`, which turned the run
    from `before` into `after`), without folding them one by one: what closes a wait is always the
    record's own event, the first; the terminal event, if any, is the last, and the run's state
    after it still holds what its root span needs."""
    if not appended:
        return []
    spans = [span] if (span := log_span(before, appended[0])) is not None else []
    if len(appended) > 1 and appended[-1].is_terminal and (root := log_span(after, appended[-1])) is not None:
        spans.append(root)
    return spans


def grader_span(*, provider: str, model: str, started: datetime, ended: datetime,
                input_tokens: int | None, output_tokens: int | None, score: float | None,
                error_type: str | None) -> SpanSpec:
    """The span of one model grader call (`agentlog score --grader`), with the grade it gave."""
    attributes: Attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                              "gen_ai.request.model": model, "gen_ai.evaluation.name": "model_grader"}
    if input_tokens is not None and output_tokens is not None:
        attributes |= {"gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}
    if score is not None:
        attributes["gen_ai.evaluation.score.value"] = score
    return SpanSpec(f"chat {model}", started, ended, attributes, kind="client", error_type=error_type)


def log_span(before: RunState | None, event: Event) -> SpanSpec | None:
    """The span `event`, appended to the run that stood as `before`, closes, or None.

    The run's root span closes with its terminal event; a person's wait closes with the decision
    (or the expiry); a request closes unanswered with its timeout.
    """
    if before is None:
        return None
    p = event.payload
    base = _run_attributes(event.run_id, event.tenant_id)
    if isinstance(p, RunCompleted | RunFailed | RunCancelled):
        status = event.event_type.removeprefix("Run").lower()
        attributes = base | {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
            "agentlog.route": before.route, "agentlog.run.status": status,
            "agentlog.cost_usd": getattr(p, "cost_usd", before.metrics.cost_usd),
            "agentlog.tool_calls": before.metrics.tool_calls,
        }
        if isinstance(p, RunCompleted):
            attributes["agentlog.outcome"] = p.outcome
        # A failed run's stage is its error type: timeout, planning or budget.
        error = p.stage if isinstance(p, RunFailed) else None
        return SpanSpec(f"invoke_agent {AGENT_NAME}", before.started_at, event.event_time, attributes,
                        error_type=error, root=True)
    if event.event_type in ("ApprovalGranted", "ApprovalDenied", "ApprovalExpired") \
            and before.parked is not None and before.parked_at is not None:
        decision = event.event_type.removeprefix("Approval").lower()
        attributes = base | {"gen_ai.tool.name": before.parked.tool, "agentlog.approval.decision": decision,
                             "agentlog.policy.rule": before.parked.rule or "(default)"}
        if isinstance(p, ApprovalGranted | ApprovalDenied):
            attributes["agentlog.approval.approver"] = p.approver
        return SpanSpec(f"await_approval {before.parked.tool}", before.parked_at, event.event_time,
                        attributes, error_type="timeout" if decision == "expired" else None)
    if isinstance(p, StepTimedOut):
        asked = before.open_requests.get(p.request_id)
        start = asked.asked_at if asked is not None else event.event_time - timedelta(seconds=p.timeout_s)
        attributes = base | {"agentlog.request_type": p.request_type, "agentlog.attempt": p.attempt,
                             "agentlog.timeout_s": p.timeout_s}
        return SpanSpec(f"await {p.request_type}", start, event.event_time, attributes, error_type="timeout")
    return None
