"""Counterfactual replay: golden runs again with a candidate's policy, planner or finalizer;
recorded observations and decisions reused for the very same calls, nothing else run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from policies import load_policy, parse_policy
from processors.models import ModelsConfig
from processors.planner_scripted import ScriptedPlanner
from processors.replay import Candidate, RecordedRun, parse_line, replay_run
from processors.replay.scoring import policy_regressions, score_results
from schemas.events import ModelCall, ResponseFinalized
from tests.benchmarks.bench_replay import today

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"
LOOSE = Path(__file__).resolve().parents[2] / "processors" / "replay" / "loose-policy.example.yaml"
TODAY = today()
PRICED = ModelsConfig.model_validate({
    "providers": {"scripted": {"kind": "scripted"}},
    "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0},
               "fake-mini": {"input_usd_per_1k": 0.001, "output_usd_per_1k": 0.002}},
    "routes": {"default": {"planner": {"provider": "scripted", "model": "scripted-v1"}}}})


def golden(name: str) -> RecordedRun:
    run = parse_line((GOLDEN / f"{name}.jsonl").read_text())
    assert run is not None
    return run


def candidate(**changes: Any) -> Candidate:
    procs = changes.pop("processors", TODAY)
    return Candidate(name=changes.pop("name", "test"), processors=procs, **changes)


class NewPrompt:
    """A model planner on a new prompt version: the scripted plan, or one `edit` changes."""

    provider, model, prompt_version = "openai_compatible", "fake-mini", "planner/v2"

    def __init__(self, edit: Any = None) -> None:
        self.edit = edit

    def plan(self, *, run_id: str, text: str, route: str = "default") -> str:
        raw = ScriptedPlanner().plan(run_id=run_id, text=text, route=route)
        if self.edit is None:
            return raw
        plan = json.loads(raw)
        self.edit(plan)
        return json.dumps(plan)

    def usage(self, text: str, output: str) -> tuple[int, int]:
        return 900, 150


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.jsonl")), ids=lambda p: p.stem)
def test_a_candidate_changing_nothing_reproduces_each_golden_run(path: Path) -> None:
    run = parse_line(path.read_text())
    assert run is not None
    result = replay_run(run, candidate=candidate(), baseline=TODAY)
    assert (result["divergence"], result["unanswered"]) == (None, None)
    assert result["candidate"] == result["baseline"]
    assert result["policy_calls"] == [
        {**c, "candidate": {"action": c["baseline"]["action"], "rule": c["baseline"]["rule"]}}
        for c in result["policy_calls"]]


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.jsonl")), ids=lambda p: p.stem)
def test_todays_scripted_planner_plans_the_golden_runs_as_recorded(path: Path) -> None:
    run = parse_line(path.read_text())
    assert run is not None
    result = replay_run(run, candidate=candidate(planners={"default": ScriptedPlanner()}),
                        baseline=TODAY)
    assert (result["divergence"], result["unanswered"]) == (None, None)


def test_a_loosened_policy_lets_the_drop_through_and_the_run_stops_before_any_tool_runs() -> None:
    loose = load_policy(LOOSE, registry=TODAY.registry)
    result = replay_run(golden("destructive_sql_denied"),
                        candidate=candidate(processors=dataclasses.replace(TODAY, policy=loose)),
                        baseline=TODAY)
    (call,) = result["policy_calls"]
    assert call["baseline"] == {"action": "deny", "rule": "deny_destructive_sql", "source": "recorded"}
    assert call["candidate"] == {"action": "allow", "rule": None}
    assert result["unanswered"].startswith("the recording has no observation of query_sql")
    assert "replay runs no tool" in result["unanswered"]
    d = result["divergence"]
    assert (d["seq"], d["event_type"], d["got"]["event_type"]) == (4, "ToolRejected", "ToolApproved")
    assert result["candidate"]["status"] == "stopped" and result["candidate"]["answer"] is None
    (regression,) = policy_regressions(result)
    assert (regression["kind"], regression["baseline"], regression["candidate"]) == \
        ("loosened", "deny (deny_destructive_sql)", "allow (no rule)")


def test_a_call_a_person_decided_is_decided_again_from_the_recording() -> None:
    for name, answer in (("external_email_approved", "E-mail sent"),
                         ("external_email_rejected", "rejected by carol"),
                         ("external_email_expired", "approval expired")):
        result = replay_run(golden(name), candidate=candidate(), baseline=TODAY)
        assert result["unanswered"] is None, name
        assert answer in result["candidate"]["answer"], name


def test_a_policy_that_allows_external_mail_cannot_send_what_was_never_sent() -> None:
    allow_all = parse_policy("version: 1\nrules: []\n", registry=TODAY.registry)
    result = replay_run(golden("external_email_rejected"),
                        candidate=candidate(processors=dataclasses.replace(TODAY, policy=allow_all)),
                        baseline=TODAY)
    assert result["unanswered"].startswith("the recording has no observation of send_email")
    assert policy_regressions(result)[0]["baseline"] == \
        "require_human_approval (deny_external_email_without_approval)"


def test_a_new_prompt_diverges_at_the_plan_and_costs_what_the_model_costs() -> None:
    new = candidate(processors=dataclasses.replace(TODAY, models=PRICED),
                    planners={"default": NewPrompt()})
    result = replay_run(golden("sql_question"), candidate=new, baseline=TODAY)
    assert result["unanswered"] is None
    d = result["divergence"]
    assert (d["seq"], d["event_type"], d["processor"]) == (2, "PlanGenerated", "planner")
    assert d["reason"] == "PlanGenerated: payload.model_call differs"
    assert d["got"]["payload.model_call"]["prompt_version"] == "planner/v2"
    assert result["candidate"]["answer"] == result["baseline"]["answer"]
    assert result["candidate"]["cost_usd"] == pytest.approx(result["baseline"]["cost_usd"] + 0.0012)
    scores = score_results([result])
    assert scores["cost"]["delta"] == pytest.approx(1.2) and scores["policy"]["regressions"] == 0


def test_a_plan_calling_a_tool_with_another_input_stops_where_the_recording_cannot_answer() -> None:
    def more_hits(plan: dict[str, Any]) -> None:
        plan["steps"][0]["input"]["top_k"] = 5

    new = candidate(processors=dataclasses.replace(TODAY, models=PRICED),
                    planners={"default": NewPrompt(more_hits)})
    result = replay_run(golden("docs_question"), candidate=new, baseline=TODAY)
    assert "no observation of search_docs" in result["unanswered"]
    assert '"top_k": 5' in result["unanswered"]
    assert result["divergence"]["seq"] == 2


def test_a_plan_proposing_what_the_policy_denies_is_a_new_violation() -> None:
    def drop_too(plan: dict[str, Any]) -> None:
        plan["steps"].append({"id": "s9", "objective": "tidy up the database", "tool": "query_sql",
                              "input": {"sql": "DROP TABLE customers"},
                              "successCriteria": "the statement runs"})
        plan["maxSteps"] = len(plan["steps"])

    new = candidate(processors=dataclasses.replace(TODAY, models=PRICED),
                    planners={"default": NewPrompt(drop_too)})
    result = replay_run(golden("sql_question"), candidate=new, baseline=TODAY)
    assert result["unanswered"] is None and result["candidate"]["status"] == "completed"
    (found,) = policy_regressions(result)
    assert (found["kind"], found["step_id"], found["candidate"]) == \
        ("new_violation", "s9", "deny (deny_destructive_sql)")


def test_a_cancellation_and_a_spent_tenant_budget_are_replayed_as_recorded() -> None:
    for name, status in (("cancelled_while_waiting", "cancelled"), ("tenant_budget_spent", "failed")):
        result = replay_run(golden(name), candidate=candidate(planners={"default": ScriptedPlanner()}),
                            baseline=TODAY)
        assert (result["candidate"]["status"], result["divergence"]) == (status, None), name


def _finalized_by_a_model(run: RecordedRun) -> RecordedRun:
    call = ModelCall(provider="openai_compatible", model="gpt-4o", prompt_version="finalizer/v1",
                     input_tokens=300, output_tokens=60, latency_ms=900, cost_usd=0.0018)
    def finalized(e: Any) -> Any:
        if e.event_type == "ResponseFinalized":
            return e.model_copy(update={"payload": ResponseFinalized(text="Refunds: 30 days.",
                                                                     model_call=call)})
        if e.event_type == "RunCompleted":  # the finalizer's call counts in the run's cost
            cost = round(e.payload.cost_usd + call.cost_usd, 6)
            return e.model_copy(update={"payload": e.payload.model_copy(update={"cost_usd": cost})})
        return e

    return dataclasses.replace(run, events=tuple(map(finalized, run.events)))


def test_a_recorded_finalizer_answer_is_reused_and_dropping_the_finalizer_diverges() -> None:
    run = _finalized_by_a_model(golden("docs_question"))
    kept = replay_run(run, candidate=candidate(), baseline=TODAY)
    assert kept["divergence"] is None and kept["candidate"]["answer"] == "Refunds: 30 days."
    assert kept["candidate"]["latency_ms"] == kept["baseline"]["latency_ms"]
    dropped = replay_run(run, candidate=candidate(writers={"default": None}), baseline=TODAY)
    assert dropped["divergence"]["seq"] == 9
    assert dropped["candidate"]["answer"].startswith("Done.")
    assert dropped["candidate"]["cost_usd"] == pytest.approx(kept["candidate"]["cost_usd"] - 0.0018)


def test_replay_imports_no_tool_runner_and_no_io_library() -> None:
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from processors.replay import parse_line, replay_run, check_run, Candidate\n"
        "from tests.benchmarks.bench_replay import today\n"
        f"for p in Path({str(GOLDEN)!r}).glob('*.jsonl'):\n"
        "    run = parse_line(p.read_text())\n"
        "    check_run(run, processors=today())\n"
        "    replay_run(run, candidate=Candidate(name='x', processors=today()), baseline=today())\n"
        "bad = ['confluent_kafka', 'clickhouse_connect', 'chdb', 'httpx', 'smtplib', 'sqlite3',\n"
        "       'processors.tools.sandbox', 'processors.tools.backends', 'subprocess_run']\n"
        "print(json.dumps([m for m in bad if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout
