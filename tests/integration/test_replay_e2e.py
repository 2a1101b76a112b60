"""Replay and evaluation on the real stack, as the issue's "done when" says: record runs, export
them, replay them exactly, then with a candidate that loosens the policy (the gate fails naming
the regression) and with one that changes the planner's prompt and model (divergence and deltas).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from processors.planner_scripted import ScriptedPlanner
from tests.integration.conftest import Stack, eventually
from tests.integration.openai_server import Reply, completion, serve_llm

pytestmark = pytest.mark.integration

REQUESTS = [
    "What is our refund policy for annual plans?",
    "How many customers do we have in Germany?",
    "Drop the orders table.",
    "Open an urgent ticket: the checkout page returns 500 errors.",
    "How many customers are on the enterprise plan? Then email the count to ops@yourcompany.com.",
]
EXTERNAL = "Send an email to jane.doe@gmail.com about the delayed shipment."
ARTICLE_GATE = ["--min-quality", "0.82", "--max-cost-delta", "0.15", "--max-policy-regressions", "0"]


def record_runs(stack: Stack, tenant: str) -> list[str]:
    run_ids = [stack.cli_json("submit", text, "--tenant", tenant, "--wait")["run_id"] for text in REQUESTS]
    parked = stack.cli_json("submit", EXTERNAL, "--tenant", tenant, "--wait")
    assert parked["status"] == "awaiting_approval"
    stack.cli("approvals", "approve", parked["run_id"], "--approver", "alice", "--reason", "asked", "--wait")
    run_ids.append(parked["run_id"])
    ended = (f"SELECT count() AS n FROM agent_events WHERE tenant_id = '{tenant}' "
             "AND event_type = 'RunCompleted'")
    eventually(lambda: stack.sql(ended)[0]["n"] == len(run_ids), what="the runs in ClickHouse")
    return run_ids


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def model(body: dict[str, Any]) -> Reply:
    """A planner that writes the scripted plan, except that document searches ask for five
    passages, not three; and a grader that likes every answer well enough."""
    if body["messages"][0]["content"].startswith("You grade the answers"):
        return Reply(body=completion('{"score": 0.75, "reason": "answers the question"}'))
    user = body["messages"][-1]["content"]
    run_id = user.split("\n")[0].removeprefix("Run id: ")
    text = user.split("Request:\n", 1)[1]
    plan = json.loads(ScriptedPlanner().plan(run_id=run_id, text=text))
    for step in plan["steps"]:
        if step["tool"] == "search_docs":
            step["input"]["top_k"] = 5
    return Reply(body=completion(json.dumps(plan), prompt_tokens=812, completion_tokens=143))


def test_record_export_replay_score_and_gate(stack: Stack, tmp_path: Path) -> None:
    tenant = f"replay-{uuid.uuid4().hex[:8]}"
    run_ids = record_runs(stack, tenant)

    dataset = tmp_path / "runs.jsonl"
    exported = stack.cli("export", "--tenant", tenant, "--out", str(dataset))
    assert f"exported {len(run_ids)} run(s)" in exported.stdout
    runs = lines(dataset)
    assert sorted(r["run_id"] for r in runs) == sorted(run_ids)
    assert all(r["format"] == "agentlog.run/1" and r["status"] == "completed" for r in runs)
    from_topic = tmp_path / "topic.jsonl"
    stack.cli("export", "--source", "topic", "--tenant", tenant, "--out", str(from_topic))
    assert sorted(lines(from_topic), key=lambda r: r["run_id"]) == sorted(runs, key=lambda r: r["run_id"])

    # Exact replay: today's processors decide every recorded event as it was decided.
    check = stack.cli("replay", "--dataset", str(dataset), "--check")
    assert f"exact replay of {len(run_ids)} run(s)" in check.stdout and "no divergence" in check.stdout
    straight = stack.cli("replay", "--source", "clickhouse", "--tenant", tenant, "--check", "--json")
    assert json.loads(straight.stdout)["diverged"] == 0

    # A candidate that loosens the policy: the gate fails and names the regression.
    loose = stack.cli("replay", "--dataset", str(dataset), "--candidate", "loose-policy")
    assert "1 policy regression(s)" in loose.stdout
    scored = stack.cli("score", "--metrics", "quality,cost,latency,policy")
    assert "loosened: query_sql deny (deny_destructive_sql) → allow (no rule)" in scored.stdout
    gated = stack.cli("gate", *ARTICLE_GATE, check=False)
    assert gated.returncode == 1, gated.stdout
    assert "policy regressions: 1 × query_sql deny (deny_destructive_sql) -> allow (no rule)" in gated.stdout
    assert gated.stdout.rstrip().endswith("FAIL")

    # A candidate that changes the prompt version and the model: every plan diverges at its
    # model call, the document search asks for another input the recording cannot answer, and
    # the model's cost shows as a delta.
    with serve_llm() as llm:
        llm.respond = model
        candidates = tmp_path / "candidates.yaml"
        candidates.write_text(f"""
version: 1
candidates:
  mini-prompt-v1:
    description: a small model plans with prompt planner/v1 instead of the scripted planner
    planner: {{provider: local, model: fake-mini, prompt: v1}}
    providers:
      local: {{kind: openai_compatible, base_url: "{llm.base_url}", max_retries: 0}}
    prices:
      fake-mini: {{input_usd_per_1k: 0.001, output_usd_per_1k: 0.002}}
""")
        summary = json.loads(stack.cli("replay", "--dataset", str(dataset), "--candidate",
                                       "mini-prompt-v1", "--candidates", str(candidates), "--json").stdout)
        assert len(llm.seen) == len(run_ids)
        # The same endpoint as a model-graded scorer, named in the models file.
        models = tmp_path / "models.yaml"
        models.write_text(f"""
providers:
  scripted: {{kind: scripted}}
  local: {{kind: openai_compatible, base_url: "{llm.base_url}", max_retries: 0}}
models:
  scripted-v1: {{input_usd_per_1k: 0, output_usd_per_1k: 0}}
routes:
  default: {{planner: {{provider: scripted, model: scripted-v1}}}}
""")
        graded = Stack({**stack.env, "AGENTLOG_MODELS_FILE": str(models)}, stack.settings).cli(
            "score", "--grader", "local/judge", "--no-store", "--json")
        model_scores = json.loads(graded.stdout)["quality"]["scorers"]["model"]
        assert model_scores == {"candidate": 0.75, "baseline": 0.75, "runs": len(run_ids) - 1}
    assert (summary["runs"], summary["diverged"], summary["unanswered"]) == (len(run_ids), len(run_ids), 1)
    results = lines(Path(summary["results_dir"]) / "results.jsonl")
    first = {r["run_id"]: r["divergence"] for r in results}
    assert {(d["seq"], d["event_type"]) for d in first.values()} == {(2, "PlanGenerated")}
    assert all(d["got"]["payload.model_call"]["prompt_version"] == "planner/v1" for d in first.values())
    (why,) = [r["unanswered"] for r in results if r["unanswered"]]
    assert "no observation of search_docs" in why and '"top_k": 5' in why
    scores = stack.cli_json("score")
    assert scores["cost"]["delta"] > 0.15 and scores["policy"]["regressions"] == 0
    assert scores["quality"]["runs"] == len(run_ids) - 2  # one unanswered, one policy-stopped
    gated = stack.cli("gate", *ARTICLE_GATE, "--json", check=False)
    verdict = json.loads(gated.stdout)
    assert gated.returncode == 1 and verdict["passed"] is False
    assert [c["check"] for c in verdict["checks"] if not c["passed"]] == ["cost delta"]

    # Results and scores are in ClickHouse too, to chart the replay delta.
    stored = stack.sql("SELECT candidate, count() AS runs, sum(diverged) AS diverged FROM replay_results "
                       f"WHERE tenant_id = '{tenant}' GROUP BY candidate ORDER BY candidate")
    assert stored == [{"candidate": "check", "runs": 2 * len(run_ids), "diverged": 0},
                      {"candidate": "loose-policy", "runs": len(run_ids), "diverged": 1},
                      {"candidate": "mini-prompt-v1", "runs": len(run_ids), "diverged": len(run_ids)}]
    metrics = stack.sql("SELECT metric FROM replay_scores WHERE candidate = 'mini-prompt-v1' ORDER BY metric")
    assert [m["metric"] for m in metrics] == ["cost_usd", "latency_ms", "policy_regressions", "quality"]
