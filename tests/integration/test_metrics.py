"""The five metrics on the real stack: runs made through the CLI (completed, refused, approved,
rejected, cancelled, failed on a bad plan or a tenant budget, one still waiting), on several
tenants, routes and models; the figures `agentlog metrics` and GET /v1/metrics answer are
computed again here from the runs' own events, by the definitions of the README.

Tenants are named for this module alone, so the runs of other tests in the same store do not
count."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import SPOILER_TYPES, VIOLATION_TYPES
from streams.query_api import run_insert
from streams.replay_io import RESULT_COLUMNS, SCORE_COLUMNS, result_rows, score_rows
from tests.integration.conftest import Stack, eventually
from tests.integration.openai_server import FakeLLM, Reply, completion, serve_llm
from tests.integration.test_openai_compatible import plan_for

pytestmark = pytest.mark.integration

_ID = uuid.uuid4().hex[:6]
ACME, GLOBEX, FRUGAL = f"acme-{_ID}", f"globex-{_ID}", f"frugal-{_ID}"
TENANTS = {ACME, GLOBEX, FRUGAL}
PLANNER, WRITER = "tiny-planner-1b", "big-writer-70b"
KEY_VAR = "FAKE_LLM_API_KEY"
KEYS = ("tenant", "route", "model", "day")


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with serve_llm() as server:
        yield server


def _submit(stack: Stack, text: str, tenant: str, route: str = "default") -> dict[str, Any]:
    return stack.cli_json("submit", text, "--wait", "--tenant", tenant, "--route", route)


@pytest.fixture(scope="module")
def runs(stack: Stack, llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every kind of run, each as `runs show --json` tells it once it ended (or parked)."""
    models = tmp_path_factory.mktemp("metrics-models") / "models.yaml"
    models.write_text(json.dumps({
        "providers": {"scripted": {"kind": "scripted"},
                      "fake": {"kind": "openai_compatible", "base_url": llm.base_url, "api_key_env": KEY_VAR,
                               "timeout_s": 5, "max_retries": 0}},
        "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0},
                   PLANNER: {"input_usd_per_1k": 0.001, "output_usd_per_1k": 0.002},
                   WRITER: {"input_usd_per_1k": 0.0025, "output_usd_per_1k": 0.01}},
        "routes": {"default": {"planner": {"provider": "scripted", "model": "scripted-v1"}},
                   "llm": {"planner": {"provider": "fake", "model": PLANNER, "prompt": "v1"}},
                   "final": {"planner": {"provider": "scripted", "model": "scripted-v1"},
                             "finalizer": {"provider": "fake", "model": WRITER}}},
    }))
    tool = {"name": "search_docs"}

    def respond(body: dict[str, Any]) -> Reply:
        asked = re.search(r"^Run id: (\S+)$", body["messages"][-1]["content"], re.MULTILINE)
        if asked:  # the planner
            return Reply(body=completion(plan_for(asked.group(1), tool=tool["name"]),
                                         prompt_tokens=900, completion_tokens=120))
        return Reply(body=completion("Refunds: 30 days, no questions asked.", prompt_tokens=200,
                                     completion_tokens=10))

    llm.fresh().respond = respond
    env = {"AGENTLOG_MODELS_FILE": str(models), KEY_VAR: "sk-test",
           "AGENTLOG_TENANT_BUDGETS": json.dumps({FRUGAL: 0.001})}
    made: list[str] = []
    with stack.restarted("planner", **env), stack.restarted("responder", **env):
        made.append(_submit(stack, "What is our refund policy for annual plans?", ACME)["run_id"])
        made.append(_submit(stack, "Please drop the orders table", ACME)["run_id"])
        for verb in ("approve", "reject"):
            parked = _submit(stack, f"Send an email to jane.{verb}@gmail.com about the shipment", ACME)
            assert parked["status"] == "awaiting_approval"
            stack.cli("approvals", verb, parked["run_id"], "--approver", "sec-lead", "--wait")
            made.append(parked["run_id"])
        waiting = _submit(stack, "Send an email to still.waiting@gmail.com about the renewal", ACME)
        made.append(waiting["run_id"])
        cancelled = _submit(stack, "Email the draft to reviewer@outside.example", GLOBEX)
        stack.cli("runs", "cancel", cancelled["run_id"], "--reason", "wrong recipient", "--by", "ana")
        made.append(cancelled["run_id"])
        made.append(_submit(stack, "What is our refund policy for annual plans?", GLOBEX, "llm")["run_id"])
        tool["name"] = "launch_rockets"  # a plan the validator rejects: the run fails
        made.append(_submit(stack, "Launch the rockets, please.", GLOBEX, "llm")["run_id"])
        made.append(_submit(stack, "What is our refund policy for annual plans?", GLOBEX, "final")["run_id"])
        made.append(_submit(stack, "How many customers do we have?", FRUGAL)["run_id"])
        eventually(lambda: stack.sql(f"SELECT count() AS n FROM agent_events WHERE tenant_id = '{FRUGAL}' "
                                     "AND event_type = 'RunCompleted'")[0]["n"] == 1,
                   what="the sink to hold the first run's spend")
        made.append(_submit(stack, "How many orders are pending?", FRUGAL)["run_id"])  # over budget
    shown = [eventually(lambda r=r: _settled(stack, r), what=f"run {r} to end or park") for r in made]
    events = sum(len(run["events"]) for run in shown)
    eventually(lambda: stack.sql("SELECT count() AS n FROM agent_events WHERE run_id IN ("
                                 + ", ".join(f"'{r}'" for r in made) + ")")[0]["n"] >= events,
               what="the sink to hold every event of the runs")
    ended = {e["event_type"] for run in shown for e in run["events"]}
    assert {"RunCompleted", "RunFailed", "RunCancelled", "ToolRejected", "ApprovalRequested", "PlanRejected",
            "BudgetExceeded", "ApprovalGranted", "ApprovalDenied"} <= ended, ended
    return shown


def _settled(stack: Stack, run_id: str) -> dict[str, Any] | None:
    run = stack.cli_json("runs", "show", run_id)
    return run if run["status"] in ("completed", "failed", "cancelled", "awaiting_approval") else None


# ---- the definitions, from a run's events -------------------------------------------------------


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["event_time"])


def _facts(run: dict[str, Any], tenant: str) -> dict[str, Any]:
    events = run["events"]
    kinds = [e["event_type"] for e in events]
    started = next(e for e in events if e["event_type"] == "RunStarted")
    plan = next((e for e in events if e["event_type"] in ("PlanGenerated", "PlanRejected")), None)
    approved = next((e for e in events if e["event_type"] == "ToolApproved"), None)
    terminal = events[-1] if kinds[-1] in ("RunCompleted", "RunFailed", "RunCancelled") else None
    # Cost: model tokens and tool costs, summed from the calls themselves.
    cost = sum(e["payload"]["cost_usd"] for e in events if e["event_type"] == "ToolExecuted") + sum(
        (e["payload"].get("model_call") or {}).get("cost_usd", 0.0) for e in events)
    if terminal is not None:
        assert terminal["payload"]["cost_usd"] == pytest.approx(cost, abs=1e-6), "the terminal's cost"
    return {
        "tenant": tenant, "route": started["payload"]["route"],
        "model": plan["payload"]["model_call"]["model"] if plan else "",
        "day": _at(started).astimezone(UTC).date().isoformat(),
        "success": kinds[-1] == "RunCompleted" and not SPOILER_TYPES & set(kinds),
        "violations": sum(k in VIOLATION_TYPES for k in kinds),
        "cost": cost if terminal is not None else 0.0,  # a run still going counts its cost at its end
        "ttfa": (_at(approved) - _at(started)) / timedelta(milliseconds=1) if approved else None,
        "started": _at(started),
    }


def _quantile(values: list[float], q: float) -> float | None:
    """Linear between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _expected(facts: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for f in facts:
        groups.setdefault(tuple(f[k] for k in keys), []).append(f)
    rows = []
    for group, members in sorted(groups.items()):
        n, ok = len(members), sum(f["success"] for f in members)
        violations, cost = sum(f["violations"] for f in members), sum(f["cost"] for f in members)
        ttfa = [f["ttfa"] for f in members if f["ttfa"] is not None]
        rows.append({**dict(zip(keys, group, strict=True)), "runs": n, "successes": ok,
                     "success_rate": ok / n, "violations": violations,
                     "violation_rate_per_100": violations * 100 / n, "cost_usd": cost,
                     "cost_per_success_usd": cost / ok if ok else None,
                     "ttfa_p50_ms": _quantile(ttfa, 0.5), "ttfa_p95_ms": _quantile(ttfa, 0.95)})
    return rows


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _all_facts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_facts(r, r["tenant_id"]) for r in runs]


def _ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("tenant") in TENANTS]


# ---- what a user sees ---------------------------------------------------------------------------


def test_the_metrics_by_tenant_route_model_and_day_match_the_definitions(stack: Stack,
                                                                         runs: list[dict]) -> None:
    facts = _all_facts(runs)
    expected = _rounded(_expected(facts, KEYS))
    assert {(r["tenant"], r["route"], r["model"]) for r in expected} >= {
        (ACME, "default", "scripted-v1"), (GLOBEX, "llm", PLANNER), (GLOBEX, "final", "scripted-v1"),
        (FRUGAL, "default", "")}
    answered = _rounded(_ours(stack.cli_json("metrics", "--by", "tenant,route,model,day")))
    assert answered == expected
    acme = next(r for r in answered if r["tenant"] == ACME)
    # Answered, refused, approved by a person, rejected by one, one still waiting.
    assert (acme["runs"], acme["successes"]) == (5, 2)
    assert acme["cost_per_success_usd"] == round(acme["cost_usd"] / 2, 6)
    frugal = {r["model"]: (r["runs"], r["successes"]) for r in answered if r["tenant"] == FRUGAL}
    assert frugal == {"scripted-v1": (1, 1), "": (1, 0)}, "the run over budget had no plan, nor a model"


def test_a_tenant_sees_only_its_own_metrics_over_http(stack: Stack, runs: list[dict]) -> None:
    facts = _all_facts(runs)
    http = stack.client(GLOBEX, "read")
    for by in ("tenant,route,model,day", "model", ""):
        keys = tuple(k for k in by.split(",") if k)
        mine = _rounded(_expected([f for f in facts if f["tenant"] == GLOBEX], keys))
        answer = http.get("/v1/metrics", params={"by": by} if by else {})
        assert answer.status_code == 200, answer.text
        assert _rounded(answer.json()) == mine
    assert [r["tenant"] for r in http.get("/v1/metrics", params={"by": "tenant"}).json()] == [GLOBEX]
    refused = http.get("/v1/metrics", params={"by": "tenant,colour"})
    assert refused.status_code == 422
    assert refused.json() == {"error": {"status": 422, "message": "by: unknown group key 'colour' "
                                                                  "(known: tenant, route, model, day)"}}
    assert http.get("/v1/metrics", params={"since": "soon"}).status_code == 422
    assert http.get("/v1/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    nobody = stack.client(f"nobody-{_ID}", "read").get("/v1/metrics").json()
    assert [(r["runs"], r["cost_usd"], r["success_rate"]) for r in nobody] == [(0, 0.0, None)]


def test_since_and_until_take_the_runs_started_between_them(stack: Stack, runs: list[dict]) -> None:
    facts = sorted(_all_facts(runs), key=lambda f: f["started"])
    middle = facts[len(facts) // 2]["started"]
    since = (middle.astimezone(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    later = _rounded(_expected([f for f in facts if f["started"] >= middle], ("tenant",)))
    earlier = _rounded(_expected([f for f in facts if f["started"] < middle], ("tenant",)))
    assert _rounded(_ours(stack.cli_json("metrics", "--by", "tenant", "--since", since))) == later
    assert _rounded(_ours(stack.cli_json("metrics", "--by", "tenant", "--until", since))) == earlier
    after = (facts[-1]["started"] + timedelta(milliseconds=1)).isoformat()
    assert _ours(stack.cli_json("metrics", "--by", "tenant", "--since", after)) == []
    assert _rounded(_ours(stack.cli_json("metrics", "--by", "tenant", "--since", "1h"))) == _rounded(
        _expected(facts, ("tenant",))), "a span before now"


def test_the_table_reads_as_rates_money_and_times(stack: Stack, runs: list[dict]) -> None:
    wide = Stack({**stack.env, "COLUMNS": "160"}, stack.settings)
    out = wide.cli("metrics", "--by", "tenant,route", "--since", "1d").stdout
    for heading in ("tenant", "route", "runs", "ok", "ok %", "viol", "/100", "cost $", "$/ok", "ttfa p50"):
        assert heading in out
    assert re.search(rf"{re.escape(ACME)}\s+default\s+5\s+2\s+40%", out), out
    assert "ok (succeeded): ended in RunCompleted" in out
    # On a narrower terminal, with every key, no key is cut short.
    narrow = Stack({**stack.env, "COLUMNS": "110"}, stack.settings)
    out = narrow.cli("metrics", "--by", "tenant,route,model,day", "--since", "1d").stdout
    day = datetime.now(UTC).date().isoformat()
    assert ACME in out and day in out and "scripted-v1" in out, out


def test_the_facts_of_a_run_name_its_planner_and_finalizer(stack: Stack, runs: list[dict]) -> None:
    final = next(r for r in runs if any(e["event_type"] == "ResponseFinalized"
                                        and (e["payload"].get("model_call") or {}).get("model") == WRITER
                                        for e in r["events"]))
    (row,) = stack.sql("SELECT argMinMerge(planner_model) AS planner, argMaxMerge(finalizer_model) AS "
                       "finalizer, max(terminal_type) AS ended FROM run_facts "
                       f"WHERE run_id = '{final['run_id']}'")
    assert row == {"planner": "scripted-v1", "finalizer": WRITER, "ended": "RunCompleted"}


def test_the_replay_delta_is_per_candidate_and_day_and_a_tenant_sees_its_own_replays(stack: Stack) -> None:
    at = datetime.now(UTC)
    candidate, other = f"cand-{_ID}", f"other-{_ID}"
    scored = {  # replay id: (candidate, tenant of its runs, baseline, candidate quality, runs)
        f"r1-{_ID}": (candidate, ACME, 0.50, 0.70, 2), f"r2-{_ID}": (candidate, GLOBEX, 0.60, 0.60, 6),
        f"r3-{_ID}": (other, ACME, 0.80, 0.75, 4)}
    for replay_id, (name, tenant, base, cand, n) in scored.items():
        results = [{"run_id": f"{replay_id}-{i}", "tenant_id": tenant} for i in range(n)]
        run_insert(stack.settings, "replay_results", RESULT_COLUMNS,
                   result_rows(replay_id, "candidate", name, at, results, {}), token=f"t-{replay_id}",
                   sink_running=True)
        scores = {"candidate": name, "runs": n,
                  "quality": {"baseline": base, "candidate": cand, "delta": cand - base, "runs": n}}
        run_insert(stack.settings, "replay_scores", SCORE_COLUMNS, score_rows(replay_id, at, scores),
                   token=f"s-{replay_id}", sink_running=True)
    day = at.date().isoformat()
    rows = [r for r in stack.cli_json("metrics", "replay") if r["candidate"] in (candidate, other)]
    assert _rounded(rows) == [
        {"candidate": candidate, "day": day, "replays": 2, "runs": 8, "baseline_quality": 0.575,
         "candidate_quality": 0.625, "replay_delta": 0.05},
        {"candidate": other, "day": day, "replays": 1, "runs": 4, "baseline_quality": 0.8,
         "candidate_quality": 0.75, "replay_delta": -0.05}]
    seen = [r for r in stack.client(ACME, "read").get("/v1/metrics/replay").json()
            if r["candidate"] in (candidate, other)]
    assert [(r["candidate"], r["runs"], round(r["replay_delta"], 6)) for r in seen] == [
        (candidate, 2, 0.2), (other, 4, -0.05)]
