"""`agentlog replay | score | gate` through click, on the golden runs: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from policies import DEFAULT_POLICY_PATH
from processors.replay.dataset import DatasetError, run_from_doc
from streams.cli.common import Context
from streams.cli.replay import export, gate_cmd, replay, score
from streams.replay_io import write_dataset
from streams.settings import load_settings
from tests.benchmarks.bench_replay import synthetic_runs

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"
DRIFTED = GOLDEN / "drifted" / "docs_question_old_summaries.jsonl"
ARTICLE_GATE = ["--min-quality", "0.82", "--max-cost-delta", "0.15", "--max-policy-regressions", "0"]


@click.group()
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    click_ctx.obj = Context(load_settings())


for command in (export, replay, score, gate_cmd):
    cli.add_command(command)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AGENTLOG_SETTINGS_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("AGENTLOG_POLICY_FILE", str(DEFAULT_POLICY_PATH))
    monkeypatch.setenv("AGENTLOG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no ./candidates.yaml: the shipped example is used
    return tmp_path / "home"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(p.read_text() for p in sorted(GOLDEN.glob("*.jsonl"))))
    return path


def test_check_of_the_golden_runs_finds_no_divergence(dataset: Path, home: Path) -> None:
    out = run("replay", "--dataset", str(dataset), "--check", "--no-store")
    assert out.exit_code == 0, out.output
    assert "exact replay of 13 run(s), 127 event(s)" in out.output and "no divergence" in out.output
    latest = Path((home / "replay" / "LATEST").read_text().strip())
    summary = json.loads((latest / "summary.json").read_text())
    assert (summary["mode"], summary["runs"], summary["diverged"]) == ("check", 13, 0)
    assert len((latest / "results.jsonl").read_text().splitlines()) == 13


def test_check_of_the_drifted_run_exits_1_naming_the_event(dataset: Path) -> None:
    dataset.write_text(dataset.read_text() + DRIFTED.read_text())
    out = run("replay", "--dataset", str(dataset), "--check", "--no-store")
    assert out.exit_code == 1
    assert "1 diverged" in out.output
    assert ("run 7f00b812-5fe4-5620-9a3b-325bc16d3687 (acme): first divergence at seq 6 "
            "ObservationCaptured, decided by orchestrator") in out.output
    assert "payload.summary: expected …'ancelling simply stops the next renewal.'" in out.output


def test_check_as_json_says_how_fast(dataset: Path) -> None:
    out = run("replay", "--dataset", str(dataset), "--check", "--no-store", "--json")
    summary = json.loads(out.output)
    assert (summary["runs"], summary["events"], summary["diverged"]) == (13, 127, 0)
    assert summary["events_per_s"] > 0


def test_a_loosened_policy_fails_the_gate_with_the_regression_named(dataset: Path) -> None:
    out = run("replay", "--dataset", str(dataset), "--candidate", "loose-policy", "--no-store")
    assert out.exit_code == 0, out.output
    assert "1 policy regression(s)" in out.output
    scored = run("score", "--metrics", "quality,cost,latency,policy", "--no-store")
    assert scored.exit_code == 0, scored.output
    assert "1 loosened: query_sql deny (deny_destructive_sql) → allow (no rule)" in scored.output
    gated = run("gate", *ARTICLE_GATE)
    assert gated.exit_code == 1
    assert "FAIL" in gated.output
    verdict = json.loads(run("gate", *ARTICLE_GATE, "--json").output)
    assert verdict["passed"] is False
    failed = [c for c in verdict["checks"] if not c["passed"]]
    assert [c["check"] for c in failed] == ["policy regressions"]
    assert failed[0]["detail"].startswith(
        "1 × query_sql deny (deny_destructive_sql) -> allow (no rule) (e.g. run b5d3ebcd")


def test_replanning_with_todays_scripted_planner_passes_the_gate(dataset: Path, home: Path) -> None:
    assert run("replay", "--dataset", str(dataset), "--candidate", "scripted-planner",
               "--no-store").exit_code == 0
    scores = json.loads(run("score", "--no-store", "--json").output)
    assert (scores["divergence"], scores["cost"]["delta"], scores["policy"]["regressions"]) == \
        ({"runs": 0, "unanswered": 0}, 0.0, 0)
    gated = run("gate", *ARTICLE_GATE)
    assert gated.exit_code == 0, gated.output
    assert "PASS" in gated.output


def test_score_and_gate_take_explicit_paths(dataset: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    run("replay", "--dataset", str(dataset), "--candidate", "loose-policy", "--out", str(out_dir),
        "--no-store")
    assert run("score", str(out_dir / "results.jsonl"), "--no-store").exit_code == 0
    assert run("gate", str(out_dir), "--max-policy-regressions", "1").exit_code == 0
    assert run("gate", str(out_dir / "scores.json"), "--max-policy-regressions", "0").exit_code == 1


def test_usage_errors_exit_2(dataset: Path) -> None:
    assert run("replay", "--dataset", str(dataset)).exit_code == 2
    assert run("replay", "--dataset", str(dataset), "--check", "--candidate", "x").exit_code == 2
    unknown = run("replay", "--dataset", str(dataset), "--candidate", "nope", "--no-store")
    assert unknown.exit_code == 2 and "no candidate 'nope' (candidates: loose-policy" in unknown.output
    assert run("score").exit_code == 2  # nothing replayed yet
    run("replay", "--dataset", str(dataset), "--check", "--no-store")
    checked = run("score", "--no-store")
    assert checked.exit_code == 2 and "exact-replay results" in checked.output
    assert run("gate").exit_code == 2  # no threshold
    assert run("gate", "--min-quality", "0.5").exit_code == 2  # the latest replay has no scores


def test_a_bad_dataset_line_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text((GOLDEN / "sql_question.jsonl").read_text() + "{oops\n")
    out = run("replay", "--dataset", str(bad), "--check", "--no-store")
    assert out.exit_code == 2 and "line 2: not JSON" in out.output


def test_replaying_in_several_processes_gives_the_same_results(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    with path.open("w") as handle:
        write_dataset(synthetic_runs(450, seed=11), handle)
    for workers in ("1", "2"):
        out = run("replay", "--dataset", str(path), "--candidate", "loose-policy", "--workers", workers,
                  "--out", str(tmp_path / workers), "--no-store")
        assert out.exit_code == 0, out.output
    one, two = ((tmp_path / w / "results.jsonl").read_text() for w in ("1", "2"))
    assert one == two and len(one.splitlines()) == 450


def test_a_stored_payload_that_is_not_json_is_a_dataset_error_naming_the_event():
    doc = {"run_id": "r-1", "tenant_id": "acme", "events": [
        {"seq": 1, "event_id": "e1", "event_type": "RunStarted", "actor": "orchestrator",
         "event_time": "2026-11-26T09:00:00+00:00", "payload": "{not json"}]}
    with pytest.raises(DatasetError, match="run r-1 seq 1"):
        run_from_doc(doc)
