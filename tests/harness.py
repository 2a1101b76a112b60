"""Drives the orchestrator's pure decisions like the stack does, for tests of the core."""

from __future__ import annotations

import json
from datetime import timedelta

from processors.orchestrator import OrchestratorConfig, due_timers, handle
from processors.results import answer
from processors.state import RunState
from schemas.events import Event, PlanGenerated, PlanStep, RunRequested, ToolApproved, ToolExecuted
from tests.factories import CALL, T0, envelope

CONFIG = OrchestratorConfig(tool_costs={"search_docs": 0.0005, "send_email": 0.002, "query_sql": 0.001},
                            tool_timeouts={"search_docs": 5.0})
RUN = "run-0001"


class Run:
    """Feeds inbox records to `handle` and keeps the log it appends, like the service does."""

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.log: list[Event] = []
        self.clock = T0

    def send(self, record: Event):
        self.clock += timedelta(milliseconds=5)
        outcome = handle(self.state, record, now=self.clock, config=CONFIG)
        self.log.extend(outcome.events)
        self.state = outcome.state
        return outcome

    def request(self, text: str = "find the refund policy", key: str = "k1"):
        return self.send(envelope(RunRequested(text=text, idempotency_key=key), run_id=RUN, seq=0,
                                  actor="gateway", event_id=f"req-{key}"))

    def fire_timers(self, after_s: float = 0.0) -> list[str]:
        """Let `after_s` seconds pass, then send what the service's timer would: the types sent."""
        self.clock += timedelta(seconds=after_s)
        sent = []
        for i, (payload, cause) in enumerate(due_timers(self.state, self.clock, CONFIG)):
            self.send(envelope(payload, run_id=RUN, seq=0, event_id=f"timer-{self.clock}-{i}",
                               causation_id=cause, actor="timer", at=self.clock))
            sent.append(type(payload).__name__)
        return sent

    def last(self, kind: str) -> Event:
        return next(e for e in reversed(self.log) if e.event_type == kind)

    def reply(self, trigger: str, payload, actor: str = "worker"):
        return self.send(answer(self.last(trigger), payload, actor=actor, now=self.clock))

    def types(self) -> list[str]:
        return [e.event_type for e in self.log]


def plan(*steps: tuple[str, dict], budget: float = 0.5) -> PlanGenerated:
    return PlanGenerated(
        max_steps=len(steps) + 1, budget_usd=budget, stop_conditions=["done"], plan_json="{}",
        model_call=CALL, steps=[PlanStep(id=f"s{i}", objective="do the thing", tool=tool,
                                         input_json=json.dumps(args), success_criteria="it is done")
                                for i, (tool, args) in enumerate(steps, 1)],
    )


def executed(tool: str, out: dict, step: str = "s1") -> ToolExecuted:
    return ToolExecuted(step_id=step, tool=tool, status="ok", output_json=json.dumps(out),
                        duration_ms=12, cost_usd=CONFIG.tool_costs[tool])


def approve(step: str, tool: str, input_json: str) -> ToolApproved:
    return ToolApproved(step_id=step, tool=tool, input_json=input_json, idempotency_key=f"{RUN}/{step}",
                        reason="default: allow", policy_version="v1")
