"""Exact replay: golden runs recorded from the real stack replay through today's processors
without divergence, and a deliberately drifted one is caught at its first divergent event."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from policies import DEFAULT_POLICY_PATH, load_policy, parse_policy
from processors.orchestrator import OrchestratorConfig
from processors.planner_scripted import ScriptedPlanner
from processors.replay import (
    Candidate,
    Processors,
    RecordedRun,
    check_run,
    inbox_record,
    parse_line,
    simulate,
)
from processors.replay.workers import redecide
from processors.tools.registry import ToolRegistry, default_registry
from schemas.events import RunCancelled, RunRequested
from tests.benchmarks.bench_replay import SyntheticWorld, synthetic_runs, today

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"
DRIFTED = GOLDEN / "drifted" / "docs_question_old_summaries.jsonl"
LOOSE = Path(__file__).resolve().parents[2] / "processors" / "replay" / "loose-policy.example.yaml"
TODAY = today()


def golden(name: str) -> RecordedRun:
    run = parse_line((GOLDEN / f"{name}.jsonl").read_text())
    assert run is not None
    return run


def with_events(run: RecordedRun, events: tuple) -> RecordedRun:  # type: ignore[type-arg]
    return dataclasses.replace(run, events=events)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.jsonl")), ids=lambda p: p.stem)
def test_every_golden_run_replays_without_divergence(path: Path) -> None:
    doc = json.loads(path.read_text())
    run = parse_line(path.read_text())
    assert run is not None
    checked = check_run(run, processors=TODAY)
    assert checked.divergence is None, checked.divergence
    assert (checked.events, checked.status) == (len(doc["events"]), doc["status"])


def test_the_golden_runs_cover_what_a_run_can_go_through() -> None:
    kinds = {e.event_type for p in GOLDEN.glob("*.jsonl") for e in parse_line(p.read_text()).events}  # type: ignore[union-attr]
    assert kinds >= {"ToolApproved", "ToolRejected", "ApprovalRequested", "ApprovalGranted",
                     "ApprovalDenied", "ApprovalExpired", "RunCancelled", "BudgetExceeded",
                     "StepTimedOut", "RequestRetried", "RunFailed", "RunCompleted"}


def test_the_drifted_run_is_caught_at_its_first_divergent_event() -> None:
    run = parse_line(DRIFTED.read_text())
    assert run is not None
    found = check_run(run, processors=TODAY).divergence
    assert found is not None
    assert (found.seq, found.event_type, found.processor) == (6, "ObservationCaptured", "orchestrator")
    assert found.reason == "ObservationCaptured: payload.summary differs"
    assert found.expected is not None and found.got is not None
    assert " | " not in found.expected["payload.summary"]  # the old summarizer: first passage only
    assert found.got["payload.summary"].startswith(found.expected["payload.summary"] + " | ")


def test_the_drift_is_where_the_test_says_it_is() -> None:
    # Guards the fixture: the drifted copy differs from the recording from seq 6 on, only.
    drifted, original = parse_line(DRIFTED.read_text()), golden("docs_question")
    assert drifted is not None
    differing = [a.seq for a, b in zip(original.events, drifted.events, strict=True) if a != b]
    assert differing == [6, 7, 8, 9]


def test_a_stricter_policy_today_diverges_at_the_guards_answer() -> None:
    strict = parse_policy("version: 1\nrules:\n  - {name: no_docs, when: {tool: search_docs}, "
                          "action: deny}\n", registry=TODAY.registry)
    found = check_run(golden("docs_question"),
                      processors=dataclasses.replace(TODAY, policy=strict)).divergence
    assert found is not None
    assert (found.seq, found.processor) == (4, "policy_guard")
    assert (found.expected["event_type"], found.got["event_type"]) == ("ToolApproved", "ToolRejected")  # type: ignore[index]


def test_a_looser_policy_today_diverges_where_the_drop_was_denied() -> None:
    loose = load_policy(LOOSE, registry=TODAY.registry)
    found = check_run(golden("destructive_sql_denied"),
                      processors=dataclasses.replace(TODAY, policy=loose)).divergence
    assert found is not None
    assert (found.seq, found.event_type, found.processor) == (4, "ToolRejected", "policy_guard")
    assert found.got["event_type"] == "ToolApproved"  # type: ignore[index]


def test_a_new_policy_version_that_decides_the_same_is_no_divergence(tmp_path: Path) -> None:
    edited = tmp_path / "policy.yaml"
    edited.write_text("# reworded comment\n" + DEFAULT_POLICY_PATH.read_text())
    policy = load_policy(edited, registry=TODAY.registry)
    assert policy.version != load_policy(DEFAULT_POLICY_PATH).version
    for path in GOLDEN.glob("*.jsonl"):
        run = parse_line(path.read_text())
        assert not check_run(run, processors=dataclasses.replace(TODAY, policy=policy)).diverged  # type: ignore[arg-type]


def test_a_plan_invalid_today_diverges_at_the_plan() -> None:
    tools = ToolRegistry([t for t in default_registry() if t.name != "search_docs"])
    found = check_run(golden("docs_question"),
                      processors=dataclasses.replace(TODAY, registry=tools)).divergence
    assert found is not None
    assert (found.seq, found.processor) == (2, "planner")
    assert (found.expected["event_type"], found.got["event_type"]) == ("PlanGenerated", "PlanRejected")  # type: ignore[index]


def test_a_changed_tool_cost_diverges_at_the_orchestrators_budget_check() -> None:
    pricey = OrchestratorConfig(tool_costs={**TODAY.orchestrator.tool_costs, "search_docs": 5.0})
    found = check_run(golden("docs_question"),
                      processors=dataclasses.replace(TODAY, orchestrator=pricey)).divergence
    assert found is not None
    assert (found.seq, found.event_type, found.processor) == (3, "ToolProposed", "orchestrator")
    assert found.got["event_type"] == "BudgetExceeded"  # type: ignore[index]


def test_a_run_still_in_progress_replays_as_far_as_it_got() -> None:
    run = golden("external_email_approved")
    checked = check_run(with_events(run, run.events[:4]), processors=TODAY)
    assert (checked.divergence, checked.status) == (None, "awaiting_approval")


def test_a_recording_cut_inside_an_append_is_reported_where_it_ends() -> None:
    run = golden("docs_question")
    found = check_run(with_events(run, run.events[:6]), processors=TODAY).divergence
    assert found is not None
    assert (found.seq, found.event_type, found.expected) == (7, "", None)
    assert found.got["event_type"] == "ResponseRequested"  # type: ignore[index]


def test_a_gap_in_seq_is_reported_as_a_broken_log() -> None:
    run = golden("docs_question")
    found = check_run(with_events(run, run.events[:3] + run.events[4:]), processors=TODAY).divergence
    assert found is not None
    assert (found.seq, found.processor) == (5, "log")


def test_an_orchestrator_event_today_does_not_append_is_reported() -> None:
    run = golden("docs_question")
    extra = run.events[2].model_copy(update={"seq": 4})
    shifted = tuple(e.model_copy(update={"seq": e.seq + 1}) for e in run.events[3:])
    events = (*run.events[:3], extra, *shifted)
    found = check_run(with_events(run, events), processors=TODAY).divergence
    assert found is not None
    assert (found.seq, found.processor, found.got) == (4, "orchestrator", None)


def test_inbox_records_are_rebuilt_as_the_orchestrator_read_them() -> None:
    run = golden("cancelled_while_waiting")
    started, cancelled = run.events[0], run.events[-1]
    request = inbox_record(started)
    assert isinstance(request.payload, RunRequested) and request.seq == 0
    assert request.event_id == started.causation_id
    assert request.payload.text == run.text
    again = inbox_record(cancelled)
    assert isinstance(again.payload, RunCancelled)
    assert (again.seq, again.event_id, again.actor) == (0, cancelled.causation_id, "user:dave")


def test_the_executor_refusing_a_recorded_call_is_a_divergence() -> None:
    run = golden("docs_question")
    approved, executed = run.events[3], run.events[4]
    assert redecide(executed, approved, state=None, approved_state=None,
                    processors=TODAY) == f"run {run.run_id} has no events before this approval"


def test_synthetic_runs_of_every_kind_replay_without_divergence() -> None:
    runs = synthetic_runs(120, seed=3)
    kinds = {e.event_type for r in runs for e in r.events}
    assert {"ApprovalGranted", "ApprovalDenied", "ToolRejected", "ToolExecuted"} <= kinds
    assert [r.run_id for r in runs if check_run(r, processors=TODAY).diverged] == []


class _Planner:
    """Answers every run with the same raw output, as a model would."""

    provider, model, prompt_version = "test", "scripted-v1", "test/1"

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def plan(self, *, run_id: str, text: str, route: str = "default") -> str:
        return self.raw.replace("RUN", run_id)

    def usage(self, text: str, output: str) -> tuple[int, int]:
        return 10, 20


def _record(text: str, planner: object, processors: Processors = TODAY) -> RecordedRun:
    """A run of `text` planned by `planner`, recorded by driving the core through it."""
    seed = synthetic_runs(1)[0]
    first = seed.events[0]
    started = first.model_copy(update={"payload": first.payload.model_copy(update={"text": text})})
    sim = simulate(RecordedRun(seed.run_id, seed.tenant_id, (started,)),
                   candidate=Candidate(name="record", processors=processors,
                                       planners={"default": planner}, writers={}),  # type: ignore[dict-item]
                   baseline=processors, world=SyntheticWorld(random.Random(1)))
    assert sim.stopped is None
    return RecordedRun(seed.run_id, seed.tenant_id, tuple(sim.log))


def test_a_rejected_plan_and_a_spent_run_budget_replay_without_divergence() -> None:
    rejected = _record("anything", _Planner('{"runId": "RUN", "steps": []}'))
    assert [e.event_type for e in rejected.events][-3:] == ["PlanRejected", "ResponseFinalized", "RunFailed"]
    steps = [{"id": f"s{i}", "objective": "look it up", "tool": "search_docs",
              "input": {"query": f"q{i}"}, "successCriteria": "a passage is found"} for i in range(3)]
    plan = {"runId": "RUN", "maxSteps": 3, "budgetUsd": 0.01, "steps": steps,
            "stopConditions": ["all steps done"]}
    tight = dataclasses.replace(TODAY, orchestrator=OrchestratorConfig(tool_costs={"search_docs": 0.0098}))
    spent = _record("three searches", _Planner(json.dumps(plan)), tight)
    assert "BudgetExceeded" in [e.event_type for e in spent.events]
    assert not check_run(rejected, processors=TODAY).diverged
    assert not check_run(spent, processors=tight).diverged
    assert check_run(spent, processors=TODAY).divergence.processor == "orchestrator"  # type: ignore[union-attr]


def test_the_scripted_planner_writes_the_recorded_plans_again() -> None:
    # What keeps golden runs honest: they were planned by today's scripted planner.
    for path in GOLDEN.glob("*.jsonl"):
        run = parse_line(path.read_text())
        assert run is not None
        plan = next((e.payload for e in run.events if e.event_type == "PlanGenerated"), None)
        if plan is not None:
            again = ScriptedPlanner().plan(run_id=run.run_id, text=run.text, route=run.route)
            assert json.loads(again) == json.loads(plan.plan_json)  # type: ignore[union-attr]
