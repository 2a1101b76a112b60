"""`agentlog plan validate` through click: files, stdin, JSON lines, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from processors.planner_scripted import ScriptedPlanner
from streams.cli import main

RUN_ID = "run-0123456789"
VALID = ScriptedPlanner().plan(run_id=RUN_ID, text="How many customers do we have in Germany?")


def invalid() -> str:
    plan = json.loads(VALID)
    plan["maxSteps"] = 1
    plan["steps"].append({"id": "s1", "objective": "Fire them all", "tool": "launch_rockets",
                          "input": {}, "successCriteria": "They are airborne"})
    return json.dumps(plan)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["plan", "validate", *args], input=stdin,
                              catch_exceptions=False)


def results(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CLI loads settings first; keep a developer's own settings file out of it.
    monkeypatch.setenv("AGENTLOG_SETTINGS_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("AGENTLOG_HOME", str(tmp_path / "home"))


def test_a_valid_plan_file_passes_with_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(VALID)
    result = run(str(path))
    assert result.exit_code == 0
    assert results(result) == [{"valid": True, "errors": []}]


def test_an_invalid_plan_lists_every_contract_error_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(invalid())
    result = run(str(path))
    assert result.exit_code == 1
    (out,) = results(result)
    assert out["valid"] is False
    assert "steps: 2 steps exceed maxSteps 1" in out["errors"]
    assert "steps[1].id: duplicate step id 's1' (also steps[0])" in out["errors"]
    assert any(e.startswith("steps[1].tool: 'launch_rockets' is not a registered tool")
               for e in out["errors"])


def test_stdin_is_read_by_default_and_by_dash() -> None:
    for args in ((), ("-",)):
        result = run(*args, stdin=VALID)
        assert (result.exit_code, results(result)) == (0, [{"valid": True, "errors": []}])
    assert run(stdin=invalid()).exit_code == 1


def test_jsonl_answers_each_line_and_a_non_json_line_is_invalid() -> None:
    text = f"{VALID}\n\nthis is not JSON\n{invalid()}\n{VALID}\n"
    result = run("--jsonl", stdin=text)
    assert result.exit_code == 1
    out = results(result)
    assert [(r["line"], r["valid"]) for r in out] == [(1, True), (3, False), (4, False), (5, True)]
    assert out[1]["errors"][0].startswith("<plan>: not valid JSON")


def test_jsonl_of_only_valid_plans_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "plans.jsonl"
    path.write_text(VALID + "\n" + VALID + "\n")
    result = run(str(path), "--jsonl")
    assert result.exit_code == 0 and len(results(result)) == 2


def test_a_whole_file_that_is_not_json_is_one_invalid_plan() -> None:
    result = run(stdin="steps:\n  - search the docs\n")
    assert result.exit_code == 1
    (out,) = results(result)
    assert out["valid"] is False and out["errors"][0].startswith("<plan>: not valid JSON")


def test_run_id_checks_the_plan_belongs_to_that_run() -> None:
    assert run("--run-id", RUN_ID, stdin=VALID).exit_code == 0
    result = run("--run-id", "run-somebody-else", stdin=VALID)
    assert result.exit_code == 1
    assert results(result)[0]["errors"] == [
        f"runId: {RUN_ID!r} is not this run's id 'run-somebody-else'"]


def test_a_missing_file_or_empty_jsonl_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.json"))
    assert result.exit_code == 2 and "nope.json" in result.stderr
    result = run("--jsonl", stdin="\n\n")
    assert result.exit_code == 2 and "no plans in the input" in result.stderr
