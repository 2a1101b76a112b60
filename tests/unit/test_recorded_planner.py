"""The recorded provider answers from the log, and `plan_with` records every planning call."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest

from processors.models import (
    MODEL_CALL_FAILED,
    ModelError,
    NotRecorded,
    RecordedPlanner,
    plan_with,
)
from processors.planner_scripted import ScriptedPlanner
from processors.replay.dataset import event_doc
from processors.tools.registry import default_registry
from schemas.events import Event, ModelCall, PlanGenerated, PlanRejected, RunStarted
from streams.models_config import parse_models_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REGISTRY = default_registry()
CONFIG = parse_models_config("""
providers:
  scripted: {kind: scripted}
  llm: {kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
models:
  scripted-v1: {input_usd_per_1k: 0, output_usd_per_1k: 0}
  small: {input_usd_per_1k: 0.5, output_usd_per_1k: 2}
routes:
  default: {planner: {provider: scripted, model: scripted-v1}}
""")


def started(run_id: str, text: str = "How many customers do we have in Germany?") -> Event:
    return Event.of(RunStarted(text=text, route="default", idempotency_key=run_id),
                    run_id=run_id, seq=1, event_id=f"{run_id}-1", tenant_id="acme",
                    event_time=T0, actor="orchestrator")


def logged(answer: Event, seq: int = 2) -> Event:
    """A worker's answer as the orchestrator appends it to the log."""
    return answer.model_copy(update={"seq": seq})


def ticking(step: float = 0.25) -> Any:
    ticks = count()
    return lambda: next(ticks) * step


class FakeModel:
    """A model that answers what it is told to, or fails."""

    provider = "openai_compatible"
    model = "small"
    prompt_version = "planner/v1"

    def __init__(self, output: str | ModelError) -> None:
        self.output = output

    def plan(self, *, run_id: str, text: str, route: str) -> str:
        if isinstance(self.output, ModelError):
            raise self.output
        return self.output

    def usage(self, text: str, output: str) -> tuple[int, int]:
        return 1200, 300


def valid_plan(run_id: str) -> str:
    return ScriptedPlanner().plan(run_id=run_id, text="What is our refund policy?", route="default")


# ---- plan_with records the call -----------------------------------------------------------------


def test_a_model_plan_records_provider_model_prompt_tokens_latency_and_cost() -> None:
    out = plan_with(started("run-aaaaaaaa"), FakeModel(valid_plan("run-aaaaaaaa")), config=CONFIG,
                    registry=REGISTRY, now=lambda: T0, clock=ticking(0.25))
    assert isinstance(out.payload, PlanGenerated)
    assert out.payload.model_call == ModelCall(
        provider="openai_compatible", model="small", prompt_version="planner/v1",
        input_tokens=1200, output_tokens=300, latency_ms=250, cost_usd=1.2)  # 1.2k×0.5 + 0.3k×2
    assert out.causation_id == "run-aaaaaaaa-1" and out.actor == "planner"


def test_an_invalid_model_plan_is_rejected_with_its_raw_output_and_cost() -> None:
    raw = valid_plan("run-aaaaaaaa").replace("search_docs", "launch_rockets")
    out = plan_with(started("run-aaaaaaaa"), FakeModel(raw), config=CONFIG, registry=REGISTRY,
                    now=lambda: T0)
    assert isinstance(out.payload, PlanRejected)
    assert out.payload.raw_output == raw
    assert any("'launch_rockets' is not a registered tool" in e for e in out.payload.errors)
    assert out.payload.model_call.cost_usd == pytest.approx(1.2)  # a bad plan still cost money


def test_a_failed_model_call_becomes_a_rejection_saying_so() -> None:
    out = plan_with(started("run-aaaaaaaa"), FakeModel(ModelError("endpoint down")), config=CONFIG,
                    registry=REGISTRY, now=lambda: T0, clock=ticking(2.0))
    assert isinstance(out.payload, PlanRejected)
    assert out.payload.errors == [f"{MODEL_CALL_FAILED}: endpoint down"]
    assert out.payload.raw_output == ""
    call = out.payload.model_call
    assert (call.provider, call.model, call.input_tokens, call.output_tokens, call.cost_usd,
            call.latency_ms) == ("openai_compatible", "small", 0, 0, 0.0, 2000)


def test_plan_with_refuses_events_other_than_run_started() -> None:
    event = logged(plan_with(started("run-aaaaaaaa"), ScriptedPlanner(), config=CONFIG,
                             registry=REGISTRY, now=lambda: T0))
    with pytest.raises(TypeError, match="needs a RunStarted, got PlanGenerated"):
        plan_with(event, ScriptedPlanner(), config=CONFIG, registry=REGISTRY, now=lambda: T0)


# ---- the recorded provider ----------------------------------------------------------------------


def recorded_runs() -> dict[str, list[Event]]:
    runs = {}
    for run_id, model in [("run-generated", FakeModel(valid_plan("run-generated"))),
                          ("run-rejected", FakeModel('{"runId": "nope"')),
                          ("run-failed", FakeModel(ModelError("HTTP 503 after 3 tries")))]:
        first = started(run_id)
        runs[run_id] = [first, logged(plan_with(first, model, config=CONFIG, registry=REGISTRY,
                                                now=lambda: T0, clock=ticking(0.1)))]
    runs["run-unplanned"] = [started("run-unplanned")]
    return runs


def test_it_answers_with_the_recorded_plan_and_tokens() -> None:
    runs = recorded_runs()
    planner = RecordedPlanner(runs)
    raw = planner.plan(run_id="run-generated", text="ignored", route="ignored")
    assert raw == runs["run-generated"][1].payload.plan_json  # type: ignore[union-attr]
    assert planner.usage("ignored", raw) == (1200, 300)
    assert planner.model_call("run-generated").latency_ms == 100


def test_it_answers_a_rejected_run_with_the_raw_output_the_model_wrote() -> None:
    planner = RecordedPlanner(recorded_runs())
    assert planner.plan(run_id="run-rejected") == '{"runId": "nope"'
    assert planner.usage("", '{"runId": "nope"') == (1200, 300)


def test_a_run_whose_model_call_failed_fails_again_with_the_same_reason() -> None:
    planner = RecordedPlanner(recorded_runs())
    with pytest.raises(ModelError, match=r"^HTTP 503 after 3 tries$"):
        planner.plan(run_id="run-failed")


def test_runs_without_a_recording_raise_not_recorded() -> None:
    planner = RecordedPlanner(recorded_runs())
    assert planner.run_ids == ["run-failed", "run-generated", "run-rejected"]
    for run_id in ("run-unplanned", "run-never-seen"):
        with pytest.raises(NotRecorded, match=f"run {run_id} has no recorded plan"):
            planner.plan(run_id=run_id)
    with pytest.raises(NotRecorded):
        planner.usage("", "an output it never gave")


def test_replaying_through_plan_with_gives_back_the_recorded_events() -> None:
    runs = recorded_runs()
    planner = RecordedPlanner.from_events(e for events in runs.values() for e in events)
    for run_id in ("run-generated", "run-rejected", "run-failed"):
        first, original = runs[run_id]
        replayed = plan_with(first, planner, config=CONFIG, registry=REGISTRY, now=lambda: T0)
        assert logged(replayed) == original, run_id


def test_it_reads_runs_as_runs_show_prints_them_and_single_events_as_jsonl() -> None:
    runs = recorded_runs()
    lines = [json.dumps({"run_id": run_id, "tenant_id": "acme", "status": "x",
                         "events": [event_doc(e) for e in events]})
             for run_id, events in runs.items() if run_id != "run-rejected"]
    rejected = runs["run-rejected"][1]
    row = {"run_id": "run-rejected", "event_type": "PlanRejected", "seq": 2, "extra": "column",
           "payload": json.dumps(rejected.payload.model_dump(mode="json"))}
    lines += ["", json.dumps(row), json.dumps({"run_id": "run-rejected", "event_type": "RunFailed"})]
    planner = RecordedPlanner.from_jsonl(io.StringIO("\n".join(lines) + "\n"))
    assert planner.run_ids == ["run-failed", "run-generated", "run-rejected"]
    assert planner.plan(run_id="run-rejected") == '{"runId": "nope"'
    assert planner.model_call("run-generated") == runs["run-generated"][1].payload.model_call  # type: ignore[union-attr]


def test_it_reads_a_jsonl_file_by_path(tmp_path: Any) -> None:
    path = tmp_path / "runs.jsonl"
    events = recorded_runs()["run-generated"]
    path.write_text(json.dumps({"run_id": "run-generated",
                                "events": [event_doc(e) for e in events]}) + "\n")
    assert RecordedPlanner.from_jsonl(path).run_ids == ["run-generated"]
    assert RecordedPlanner.from_jsonl(str(path)).run_ids == ["run-generated"]


@pytest.mark.parametrize(("line", "why"), [
    ("{not json", "line 2: not a recorded run or event"),
    ("[1, 2]", "line 2: .*not a JSON object"),
    ('{"hello": 1}', "line 2: .*expected a run"),
    ('{"event_type": "PlanRejected", "payload": {}}', "line 2: .*no run_id"),
    ('{"run_id": "r", "event_type": "PlanRejected", "payload": {"errors": []}}',
     r"line 2: not a recorded PlanRejected \(raw_output: Field required; model_call"),
])
def test_a_bad_jsonl_line_is_refused_with_its_number(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        RecordedPlanner.from_jsonl(io.StringIO('{"run_id": "r", "events": []}\n' + line + "\n"))
