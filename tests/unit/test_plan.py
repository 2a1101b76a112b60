"""The plan contract: every rule has a plan that breaks it and a message that says where."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import ValidationError

from processors.plan import AgentPlan, PlanValidation, plan_to_json, validate_plan
from processors.tools.registry import default_registry

REGISTRY = default_registry()
RUN_ID = "run-0001-abcd"


def plan(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "runId": RUN_ID,
        "maxSteps": 4,
        "budgetUsd": 0.5,
        "steps": [
            step("s1", "search_docs", {"query": "refund policy", "top_k": 3}),
            step("s2", "query_sql", {"sql": "SELECT COUNT(*) FROM orders"}),
        ],
        "stopConditions": ["all steps done"],
    }
    raw.update(changes)
    return raw


def step(id_: str, tool: str, input_: Any, **changes: Any) -> dict[str, Any]:
    raw = {"id": id_, "objective": "Find the answer", "tool": tool, "input": input_,
           "successCriteria": "Rows are returned"}
    raw.update(changes)
    return raw


def errors_of(raw: Any, **kwargs: Any) -> list[str]:
    result = validate_plan(raw, registry=REGISTRY, **kwargs)
    assert (result.plan is None) == bool(result.errors), "a plan comes back only when valid"
    return result.errors


def test_a_good_plan_passes_as_dict_and_as_json() -> None:
    for raw in (plan(), json.dumps(plan())):
        result = validate_plan(raw, registry=REGISTRY, run_id=RUN_ID)
        assert result.valid and result.errors == []
        assert result.plan is not None and result.plan.steps[1].tool == "query_sql"


def test_an_int_budget_is_a_number_but_a_string_is_not() -> None:
    assert errors_of(plan(budgetUsd=1)) == []
    assert errors_of(plan(budgetUsd="1")) == ["budgetUsd: Input should be a valid number"]


@pytest.mark.parametrize("value", ["1", 1.0, True, None])
def test_max_steps_must_be_a_real_int(value: Any) -> None:
    errors = errors_of(plan(maxSteps=value))
    assert len(errors) == 1 and errors[0].startswith("maxSteps: ")


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"runId": "short"}, "runId: "),
        ({"maxSteps": 0}, "maxSteps: "),
        ({"maxSteps": 21}, "maxSteps: "),
        ({"budgetUsd": 0.001}, "budgetUsd: "),
        ({"budgetUsd": 10.5}, "budgetUsd: "),
        ({"steps": []}, "steps: "),
        ({"stopConditions": []}, "stopConditions: "),
        ({"stopConditions": "done"}, "stopConditions: "),
        ({"extra": 1}, "extra: "),
        ({"steps": [step("", "search_docs", {"query": "x"})]}, "steps[0].id: "),
        ({"steps": [step("s1", "search_docs", {"query": "x"}, objective="Find")]},
         "steps[0].objective: "),
        ({"steps": [step("s1", "search_docs", {"query": "x"}, successCriteria="ok")]},
         "steps[0].successCriteria: "),
        ({"steps": [step("s1", "search_docs", ["x"])]}, "steps[0].input: "),
        ({"steps": [step("s1", "search_docs", {"query": "x"}, why="because")]}, "steps[0].why: "),
        ({"steps": [{"id": "s1", "tool": "search_docs", "input": {"query": "x"},
                     "successCriteria": "Rows are returned"}]}, "steps[0].objective: "),
    ],
)
def test_each_field_rule_has_a_failing_case(changes: dict[str, Any], location: str) -> None:
    errors = errors_of(plan(**changes))
    assert errors and all(e.startswith(location) for e in errors), errors


def test_missing_top_level_field_is_named() -> None:
    raw = plan()
    del raw["budgetUsd"]
    assert errors_of(raw) == ["budgetUsd: Field required"]


def test_duplicate_step_ids() -> None:
    steps = [step("s1", "search_docs", {"query": "a"}), step("s1", "search_docs", {"query": "b"})]
    assert errors_of(plan(steps=steps)) == [
        "steps[1].id: duplicate step id 's1' (also steps[0])"
    ]


def test_unregistered_tool() -> None:
    errors = errors_of(plan(steps=[step("s1", "launch_rocket", {"target": "moon"})]))
    assert len(errors) == 1
    assert errors[0].startswith("steps[0].tool: 'launch_rocket' is not a registered tool")
    assert "query_sql" in errors[0]


def test_tool_names_are_exact() -> None:
    assert errors_of(plan(steps=[step("s1", "Query_SQL", {"sql": "SELECT 1"})]))


def test_bad_input_names_step_and_field() -> None:
    steps = [step("s1", "search_docs", {"query": "a"}), step("s2", "query_sql", {})]
    assert errors_of(plan(steps=steps)) == ["steps[1].input: 'sql' is a required property"]


def test_nested_input_errors_point_inside_the_input() -> None:
    mail = {"to": ["ab"], "subject": "Hi", "body": "x"}
    errors = errors_of(plan(steps=[step("s1", "send_email", mail)]))
    assert errors and errors[0].startswith("steps[0].input.to")


def test_too_many_steps_for_max_steps() -> None:
    errors = errors_of(plan(maxSteps=1))
    assert errors == ["steps: 2 steps exceed maxSteps 1"]


def test_over_budget() -> None:
    tickets = [step(f"s{i}", "create_ticket", {"title": "t", "description": "d"}) for i in range(6)]
    errors = errors_of(plan(maxSteps=6, budgetUsd=0.01, steps=tickets))
    assert errors == ["budgetUsd: estimated cost $0.0120 exceeds the budget $0.0100"]


def test_cost_exactly_at_budget_passes_despite_float_sums() -> None:
    tickets = [step(f"s{i}", "create_ticket", {"title": "t", "description": "d"}) for i in range(5)]
    assert errors_of(plan(maxSteps=5, budgetUsd=0.01, steps=tickets)) == []


def test_run_id_must_match_when_given() -> None:
    assert errors_of(plan(), run_id=RUN_ID) == []
    assert errors_of(plan(), run_id="run-9999-zzzz") == [
        "runId: 'run-0001-abcd' is not this run's id 'run-9999-zzzz'"
    ]


def test_contract_errors_are_all_reported_together() -> None:
    steps = [step("s1", "nope", {}), step("s1", "query_sql", {})]
    errors = errors_of(plan(maxSteps=1, steps=steps), run_id="another-run")
    assert [e.split(":")[0] for e in errors] == [
        "runId", "steps", "steps[0].tool", "steps[1].id", "steps[1].input"
    ]


@pytest.mark.parametrize("raw", ["", "not json", "{\"runId\": ", "{'runId': 'x'}"])
def test_non_json_is_one_clear_error(raw: str) -> None:
    errors = errors_of(raw)
    assert len(errors) == 1 and errors[0].startswith("<plan>: not valid JSON")


def test_json_that_is_not_an_object() -> None:
    errors = errors_of("[1, 2]")
    assert len(errors) == 1 and errors[0].startswith("<plan>: ")


def test_nan_is_not_json() -> None:
    assert errors_of(json.dumps(plan()).replace("0.5", "NaN"))[0].startswith("<plan>: not valid")


def test_plan_to_json_is_compact_sorted_and_stable() -> None:
    first = validate_plan(plan(budgetUsd=1), registry=REGISTRY).plan
    assert first is not None
    text = plan_to_json(first)
    decoded = json.loads(text)
    assert text == json.dumps(decoded, sort_keys=True, separators=(",", ":"))
    assert text.startswith('{"budgetUsd":1.0,"maxSteps":4,')
    again = validate_plan(text, registry=REGISTRY).plan
    assert again == first and again is not None and plan_to_json(again) == text


def test_results_and_models_are_frozen() -> None:
    result = validate_plan(plan(), registry=REGISTRY)
    assert isinstance(result, PlanValidation)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.errors = []  # type: ignore[misc]
    assert result.plan is not None
    with pytest.raises(ValidationError):
        result.plan.maxSteps = 20  # type: ignore[misc]
    assert AgentPlan.model_config.get("strict") is True
