"""Scoring, the gate, the candidates file and the dataset format."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.models import ModelChoice, RecordedPlanner
from processors.replay import DatasetError, parse_line, run_doc, run_from_doc
from processors.replay.candidates import CandidatesError, models_for, parse_candidates
from processors.replay.gate import Thresholds, gate
from processors.replay.model_grader import OpenAICompatibleGrader
from processors.replay.scoring import (
    criteria_score,
    model_scorer,
    policy_regressions,
    reference_score,
    score_results,
)
from tests.benchmarks.bench_replay import today

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"
EXAMPLE = Path(__file__).resolve().parents[2] / "processors" / "replay" / "candidates.example.yaml"


def side(answer: str | None = "Done.", steps: list[tuple[str, str | None]] = (),  # type: ignore[assignment]
         decisions: list[dict[str, Any]] = (), cost: float = 0.001, latency: int = 100,  # type: ignore[assignment]
         errors: list[str] | None = None) -> dict[str, Any]:
    plan: dict[str, Any] = {"errors": errors} if errors else {
        "steps": [{"id": i, "tool": "search_docs", "input_json": "{}", "success_criteria": "found",
                   "status": s} for i, s in steps]}
    return {"status": "completed", "answer": answer, "plan": plan, "decisions": list(decisions),
            "cost_usd": cost, "latency_ms": latency}


def result(run_id: str = "r1", *, base: dict[str, Any] | None = None, cand: dict[str, Any] | None = None,
           calls: list[dict[str, Any]] = (), reference: dict[str, Any] | None = None,  # type: ignore[assignment]
           unanswered: str | None = None) -> dict[str, Any]:
    return {"run_id": run_id, "tenant_id": "acme", "text": "refunds?", "candidate_name": "c",
            "baseline": base or side(steps=[("s1", "ok")]), "candidate": cand or side(steps=[("s1", "ok")]),
            "divergence": None, "unanswered": unanswered, "policy_calls": list(calls),
            "reference": reference}


def call(base: str, cand: str, *, source: str = "recorded") -> dict[str, Any]:
    return {"step_id": "s1", "tool": "query_sql", "input_json": '{"sql": "DROP TABLE t"}',
            "baseline": {"action": base, "rule": "r" if base != "allow" else None, "source": source},
            "candidate": {"action": cand, "rule": "r" if cand != "allow" else None}}


# ---- scorers --------------------------------------------------------------------------------------


def test_the_reference_scorer_counts_phrases_or_else_word_overlap() -> None:
    r = result(reference={"must_contain": ["30 days", "prorated"]})
    assert reference_score(side("Refunds within 30 Days."), r) == 0.5
    r = result(reference={"answer": "refunds within 30 days"})
    assert reference_score(side("refunds within 30 days"), r) == 1.0
    assert 0 < reference_score(side("within 30 days, pro rata"), r) < 1  # type: ignore[operator]
    assert reference_score(side("x"), result()) is None
    assert reference_score(side(None), r) is None


def test_the_criteria_scorer_judges_the_steps_that_ran_and_leaves_policy_stops_to_the_policy_metric() -> None:
    denied = [{"step_id": "s2", "action": "deny"}]
    assert criteria_score(side(steps=[("s1", "ok"), ("s2", "denied")], decisions=denied), {}) == 1.0
    assert criteria_score(side(steps=[("s1", "ok"), ("s2", "error")]), {}) == 0.5
    refused = [{"step_id": "s1", "action": "require_human_approval", "person": "denied"}]
    assert criteria_score(side(steps=[("s1", "rejected")], decisions=refused), {}) is None
    assert criteria_score(side(errors=["steps: too short"]), {}) == 0.0
    assert criteria_score(side(None, steps=[("s1", None)]), {}) is None


class FakeGrader:
    def __init__(self, grade: float | Exception) -> None:
        self.value = grade
        self.seen: list[dict[str, Any]] = []

    def grade(self, **kw: Any) -> float:
        self.seen.append(kw)
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def test_a_model_grader_is_asked_with_request_answer_reference_and_criteria() -> None:
    grader = FakeGrader(0.7)
    score = model_scorer(grader)(side("Done."), result(reference={"answer": "30 days"}))
    assert score == 0.7
    assert grader.seen == [{"request": "refunds?", "answer": "Done.", "reference": "30 days",
                            "criteria": []}]
    assert model_scorer(FakeGrader(RuntimeError("down")))(side(), result()) is None
    assert model_scorer(FakeGrader(3.0))(side(), result()) == 1.0


def test_the_openai_compatible_grader_reads_the_grade_from_the_models_json() -> None:
    sent: list[dict[str, Any]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        graded = '{"score": 0.9, "reason": "ok"}'
        return httpx.Response(200, json={"choices": [{"message": {"content": graded}}],
                                         "usage": {"prompt_tokens": 50, "completion_tokens": 9}})

    grader = OpenAICompatibleGrader(base_url="http://grader.test/v1", model="judge",
                                    transport=httpx.MockTransport(reply))
    assert grader.grade(request="refunds?", answer="30 days", reference=None, criteria=["found"]) == 0.9
    assert sent[0]["model"] == "judge" and "- found" in sent[0]["messages"][1]["content"]


# ---- aggregate scores -----------------------------------------------------------------------------


def test_scores_aggregate_quality_cost_latency_and_policy() -> None:
    results = [
        result("r1", cand=side(steps=[("s1", "ok")], cost=0.0012, latency=150)),
        result("r2", base=side(steps=[("s1", "ok")], cost=0.001),
               cand=side(steps=[("s1", "error")], cost=0.001)),
        result("r3", cand=side(None), unanswered="no observation", calls=[call("deny", "allow")]),
    ]
    scores = score_results(results)
    assert scores["runs"] == 3 and scores["divergence"] == {"runs": 0, "unanswered": 1}
    assert (scores["quality"]["candidate"], scores["quality"]["baseline"]) == (0.5, 1.0)
    assert scores["quality"]["runs"] == 2
    assert scores["cost"] == {"baseline_usd": 0.002, "candidate_usd": 0.0022, "delta": 0.1, "runs": 2}
    assert (scores["latency"]["baseline_ms"], scores["latency"]["candidate_ms"]) == (200, 250)
    assert scores["latency"]["delta"] == 0.25
    assert scores["policy"]["regressions"] == 1 and scores["policy"]["groups"][0]["count"] == 1


def test_only_the_metrics_asked_for_are_scored() -> None:
    scores = score_results([result()], metrics=["policy"])
    assert "quality" not in scores and "cost" not in scores and scores["policy"]["regressions"] == 0
    with pytest.raises(ValueError, match="unknown metrics"):
        score_results([result()], metrics=["speed"])


def test_a_cost_from_nothing_has_no_relative_delta() -> None:
    scores = score_results([result(base=side(cost=0.0), cand=side(cost=0.001))])
    assert scores["cost"]["delta"] is None
    assert score_results([result(base=side(cost=0.0), cand=side(cost=0.0))])["cost"]["delta"] == 0.0


@pytest.mark.parametrize(("base", "cand", "source", "kind"), [
    ("deny", "allow", "recorded", "loosened"),
    ("require_human_approval", "allow", "recorded", "loosened"),
    ("deny", "require_human_approval", "recorded", "loosened"),
    ("allow", "deny", "recorded", None),
    ("deny", "deny", "recorded", None),
    ("deny", "deny", "policy", "new_violation"),
    ("allow", "deny", "policy", "new_violation"),
    ("allow", "allow", "policy", None),
])
def test_policy_regressions(base: str, cand: str, source: str, kind: str | None) -> None:
    found = policy_regressions(result(calls=[call(base, cand, source=source)]))
    assert [f["kind"] for f in found] == ([kind] if kind else [])


# ---- the gate -------------------------------------------------------------------------------------


SCORES = score_results([result(cand=side(steps=[("s1", "ok")], cost=0.00105)),
                        result("r2", calls=[call("deny", "allow")])])


def test_the_gate_gives_one_verdict_per_threshold() -> None:
    checks = gate(SCORES, Thresholds(min_quality=0.82, max_cost_delta=0.15, max_policy_regressions=0))
    assert [(c.name, c.measured, c.passed) for c in checks] == [
        ("quality", "1.000", True), ("cost delta", "+2.5%", True), ("policy regressions", "1", False)]
    assert "1 × query_sql deny (r) -> allow (no rule)" in checks[2].detail
    assert "run r2 step s1" in checks[2].detail


def test_the_gate_fails_what_it_cannot_measure() -> None:
    only_policy = score_results([result()], metrics=["policy"])
    checks = gate(only_policy, Thresholds(min_quality=0.5, max_latency_delta=0.1))
    assert [(c.measured, c.passed) for c in checks] == [("not measured", False), ("not measured", False)]
    unscored = score_results([result(base=side(None), cand=side(None))])
    assert gate(unscored, Thresholds(min_quality=0.5))[0].detail == "no run could be scored"
    from_zero = score_results([result(base=side(cost=0.0), cand=side(cost=0.01))])
    assert gate(from_zero, Thresholds(max_cost_delta=0.15))[0].measured == "unbounded"


# ---- candidates -----------------------------------------------------------------------------------


def test_the_example_candidates_file_is_valid() -> None:
    parsed = parse_candidates(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert {"loose-policy", "scripted-planner"} <= set(parsed.candidates)
    assert (EXAMPLE.parent / parsed.candidates["loose-policy"].policy).exists()  # type: ignore[operator]


@pytest.mark.parametrize(("text", "why"), [
    ("candidates: {}", "candidates: Dictionary should have at least 1 item"),
    ("candidates: {a: {policy: p.yaml, colour: red}}", "candidates.a.colour: Extra inputs"),
    ("candidates: {a: {}, a: {}}", "duplicate key 'a'"),
    ("candidates: {'no/slash': {}}", "'no/slash' is not a name"),
    ("version: 2\ncandidates: {a: {}}", "version: Input should be 1"),
])
def test_a_bad_candidates_file_is_refused_with_the_field(text: str, why: str) -> None:
    with pytest.raises(CandidatesError, match=why):
        parse_candidates(text, source="c.yaml")


def test_a_candidate_sets_the_planner_and_finalizer_of_every_route() -> None:
    spec = parse_candidates("""
candidates:
  mini:
    planner: {provider: local, model: mini, prompt: v1}
    finalizer: none
    providers: {local: {kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}}
    prices: {mini: {input_usd_per_1k: 0.001, output_usd_per_1k: 0.002}}
""").candidates["mini"]
    models = models_for(spec, today().models)
    assert models.planner("support") == ModelChoice(provider="local", model="mini", prompt="v1")
    assert models.finalizer("default") is None and models.price("mini").input_usd_per_1k == 0.001
    unpriced = parse_candidates("candidates: {x: {planner: {provider: scripted, model: gpt}}}")
    with pytest.raises(CandidatesError, match="has no price"):
        models_for(unpriced.candidates["x"], today().models)


# ---- datasets -------------------------------------------------------------------------------------


def test_a_run_written_and_read_back_is_the_same_run() -> None:
    for path in GOLDEN.glob("*.jsonl"):
        run = parse_line(path.read_text())
        assert run is not None
        doc = run_doc(run.run_id, reversed(run.events))
        assert json.loads(path.read_text()) == {k: v for k, v in doc.items() if k != "reference"}
        assert run_from_doc(json.loads(json.dumps(doc))) == run


def test_a_dataset_is_what_the_recorded_planner_reads() -> None:
    text = "".join(p.read_text() for p in GOLDEN.glob("*.jsonl"))
    planner = RecordedPlanner.from_jsonl(io.StringIO(text))
    # Two never planned: a tenant out of budget, and a planner that never answered.
    assert len(planner.run_ids) == len(list(GOLDEN.glob("*.jsonl"))) - 2


def test_references_and_payloads_stored_as_text_are_read() -> None:
    doc = json.loads((GOLDEN / "sql_question.jsonl").read_text())
    doc["reference"] = {"must_contain": ["customer_count"]}
    for e in doc["events"]:
        e["payload"] = json.dumps(e["payload"])  # as agent_events stores it
    run = run_from_doc(doc)
    assert run.reference is not None and run.reference.must_contain == ("customer_count",)
    assert run_from_doc({**doc, "reference": "two customers"}).reference.answer == "two customers"  # type: ignore[union-attr]


@pytest.mark.parametrize(("line", "why"), [
    ("{not json", "line 3: not JSON"),
    ("[]", "line 3: not a JSON object"),
    ('{"events": []}', "line 3: no run_id"),
    ('{"run_id": "r", "events": {}}', "line 3: run r: 'events' is not a list"),
    ('{"run_id": "r", "tenant_id": "t", "events": [{"seq": 1, "event_type": "Nope"}]}',
     "line 3: run r seq 1: .*unknown event_type 'Nope'"),
    ('{"run_id": "r", "events": [], "reference": {"must_contain": "x"}}',
     "line 3: run r: reference.must_contain is a list"),
])
def test_a_bad_dataset_line_is_refused_with_its_number(line: str, why: str) -> None:
    with pytest.raises(DatasetError, match=why):
        parse_line(line, number=3)
