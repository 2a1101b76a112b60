"""The OpenAI-compatible adapters against a real HTTP server: the planner, then the response
writer; then the planner on the real stack.

The server is `tests/integration/openai_server.py`'s scriptable stand-in for OpenAI/vLLM/Ollama:
each test says what it answers — errors, delays, garbage, plans, answers.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from processors.models import (
    MODEL_CALL_FAILED,
    ModelError,
    ModelsConfig,
    final_response,
    plan_with,
    writer_for,
)
from processors.models.chat import ChatClient
from processors.models.openai_compatible import OpenAICompatiblePlanner
from processors.models.writer import OpenAICompatibleWriter, writer_message
from processors.prompts import load_prompt
from processors.tools.registry import default_registry
from schemas.events import (
    Event,
    ModelCall,
    PlanGenerated,
    PlanRejected,
    ResponseDrafted,
    ResponseFinalized,
    RunStarted,
)
from streams.models_config import parse_models_config
from streams.service import utcnow
from tests.integration.conftest import Stack
from tests.integration.openai_server import FakeLLM, Reply, completion, serve_llm

pytestmark = pytest.mark.integration

REGISTRY = default_registry()
MODEL = "tiny-planner-1b"
PRICES = {"input_usd_per_1k": 0.001, "output_usd_per_1k": 0.002}
KEY_VAR, KEY = "FAKE_LLM_API_KEY", "sk-test-not-a-secret"
WRITER_MODEL = "big-writer-70b"


# ---- the stand-in server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with serve_llm() as server:
        yield server


@pytest.fixture
def fresh(llm: FakeLLM) -> FakeLLM:
    return llm.fresh()


def run_id_of(body: dict[str, Any]) -> str:
    found = re.search(r"^Run id: (\S+)$", body["messages"][-1]["content"], re.MULTILINE)
    assert found, body
    return found.group(1)


def plan_for(run_id: str, *, tool: str = "search_docs",
             tool_input: dict[str, Any] | None = None) -> str:
    # Spaced and key-ordered as a model might write it: the raw text must survive as written.
    return json.dumps({
        "runId": run_id, "maxSteps": 2, "budgetUsd": 0.1,
        "steps": [{"id": "s1", "objective": "Find the refund policy in the docs", "tool": tool,
                   "input": tool_input or {"query": "refund policy annual plans"},
                   "successCriteria": "A passage about refunds is found"}],
        "stopConditions": ["all steps done"],
    }, indent=1)


def chat_client(llm: FakeLLM, *, model: str, job: str, **options: Any) -> tuple[ChatClient, list[float]]:
    """A client of the stand-in that really sleeps between tries, and notes each wait."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    settings: dict[str, Any] = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.05,
                                "rng": random.Random(7), "api_key": KEY, **options}
    return ChatClient(base_url=llm.base_url, model=model, job=job, sleep=sleep, **settings), waits


def planner(llm: FakeLLM, **options: Any) -> tuple[OpenAICompatiblePlanner, list[float]]:
    client, waits = chat_client(llm, model=MODEL, job="planner", **options)
    return OpenAICompatiblePlanner(client=client, prompt=load_prompt("planner", "v1"),
                                   registry=REGISTRY), waits


def started(run_id: str = "run-llm-00000001") -> Event:
    return Event.of(RunStarted(text="What is our refund policy for annual plans?", route="llm",
                               idempotency_key=run_id),
                    run_id=run_id, seq=1, event_id=f"{run_id}/1", tenant_id="t",
                    event_time=utcnow(), actor="orchestrator")


CONFIG = parse_models_config(json.dumps({
    "providers": {"scripted": {"kind": "scripted"}},
    "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0}, MODEL: PRICES},
    "routes": {"default": {"planner": {"provider": "scripted", "model": "scripted-v1"}}},
}))


# ---- the adapter against a real server ----------------------------------------------------------


def test_429_then_500_then_a_plan_retries_honoring_retry_after_and_records_tokens(fresh: FakeLLM) -> None:
    fresh.reset(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}),
                Reply(500, "upstream exploded"))
    fresh.respond = lambda body: Reply(body=completion(plan_for(run_id_of(body))))
    model, waits = planner(fresh)
    raw = model.plan(run_id="run-llm-00000001", text="What is our refund policy?", route="llm")

    assert raw == plan_for("run-llm-00000001")  # the content, exactly as the model wrote it
    assert len(fresh.seen) == 3
    jitter = random.Random(7).uniform(0, 0.05)  # the second wait: 0.05 × 2¹ plus up to half
    assert waits == [0.3, pytest.approx(0.1 + jitter)]
    assert fresh.seen[1].at - fresh.seen[0].at >= 0.3  # Retry-After was waited out
    assert model.usage("What is our refund policy?", raw) == (812, 143)

    body, headers = fresh.seen[-1].body, fresh.seen[-1].headers
    assert body["model"] == MODEL and body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "AgentPlan"
    assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == {
        "runId", "maxSteps", "budgetUsd", "steps", "stopConditions"}
    system, user = body["messages"]
    assert system["role"] == "system" and "### query_sql" in system["content"]
    assert user == {"role": "user", "content": "Run id: run-llm-00000001\nRoute: llm\n"
                                               "Request:\nWhat is our refund policy?"}
    assert headers["Authorization"] == f"Bearer {KEY}"


def test_the_recorded_call_has_tokens_latency_and_cost_from_the_price_table(fresh: FakeLLM) -> None:
    fresh.respond = lambda body: Reply(body=completion(plan_for(run_id_of(body)),
                                                       prompt_tokens=1500, completion_tokens=250),
                                       delay_s=0.2)
    model, _ = planner(fresh)
    out = plan_with(started(), model, config=CONFIG, registry=REGISTRY, now=utcnow)
    assert isinstance(out.payload, PlanGenerated)
    call = out.payload.model_call
    assert (call.provider, call.model, call.prompt_version) == ("openai_compatible", MODEL, "planner/v1")
    assert (call.input_tokens, call.output_tokens) == (1500, 250)
    assert call.cost_usd == pytest.approx(1.5 * 0.001 + 0.25 * 0.002)
    assert 200 <= call.latency_ms < 2000


def test_garbage_content_is_returned_as_written_and_rejected_by_the_validator(fresh: FakeLLM) -> None:
    garbage = "Sure! Here is your plan: {runId: run-llm-00000001, steps: [search the docs]"
    fresh.respond = lambda _body: Reply(body=completion(garbage))
    model, _ = planner(fresh)
    out = plan_with(started(), model, config=CONFIG, registry=REGISTRY, now=utcnow)
    assert isinstance(out.payload, PlanRejected)
    assert out.payload.raw_output == garbage
    assert out.payload.errors[0].startswith("<plan>: not valid JSON")
    assert out.payload.model_call.input_tokens == 812  # a bad answer is still a recorded call


def test_a_body_that_is_not_json_is_a_model_error_without_retries(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(200, "<html>gateway says hi</html>")
    model, waits = planner(fresh)
    with pytest.raises(ModelError, match="body that is not JSON: <html>gateway says hi"):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert (len(fresh.seen), waits) == (1, [])


def test_a_plan_with_an_unregistered_tool_is_rejected_with_the_raw_output(fresh: FakeLLM) -> None:
    fresh.respond = lambda body: Reply(body=completion(plan_for(run_id_of(body), tool="launch_rockets")))
    model, _ = planner(fresh)
    out = plan_with(started(), model, config=CONFIG, registry=REGISTRY, now=utcnow)
    assert isinstance(out.payload, PlanRejected)
    assert out.payload.raw_output == plan_for("run-llm-00000001", tool="launch_rockets")
    assert any(e.startswith("steps[0].tool: 'launch_rockets' is not a registered tool")
               for e in out.payload.errors)


def test_a_server_slower_than_the_timeout_is_a_model_error_after_the_retries(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(body=completion("{}"), delay_s=1.5)
    model, waits = planner(fresh, timeout_s=0.3, max_retries=1)
    begun = time.monotonic()
    with pytest.raises(ModelError, match=r"failed after 2 tries; last: no answer within 0.3 s"):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert len(fresh.seen) == 2 and len(waits) == 1
    assert time.monotonic() - begun < 1.5  # it gave up; it did not wait for the slow answer


def test_retries_exhausted_on_5xx_say_how_many_tries_and_the_last_answer(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(503, {"error": {"message": "overloaded"}})
    model, waits = planner(fresh, max_retries=2)
    with pytest.raises(ModelError, match=rf"{MODEL} at .* failed after 3 tries; last: HTTP 503: "
                                         r'\{"error": \{"message": "overloaded"\}\}'):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert len(fresh.seen) == 3 and len(waits) == 2


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_other_4xx_are_not_retried(fresh: FakeLLM, status: int) -> None:
    fresh.respond = lambda _body: Reply(status, {"error": {"message": "no"}})
    model, waits = planner(fresh)
    with pytest.raises(ModelError, match=rf"refused the request \(HTTP {status}: .*not retried"):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert (len(fresh.seen), waits) == (1, [])


def test_a_server_without_json_schema_gets_json_mode_once_and_from_then_on(fresh: FakeLLM) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        if body["response_format"]["type"] == "json_schema":
            return Reply(400, {"error": {"message": "response_format json_schema is not supported"}})
        return Reply(body=completion(plan_for(run_id_of(body))))

    fresh.respond = respond
    model, waits = planner(fresh)
    raw = model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert json.loads(raw)["runId"] == "run-llm-00000001"
    assert [s.body["response_format"]["type"] for s in fresh.seen] == ["json_schema", "json_object"]
    model.plan(run_id="run-llm-00000002", text="hi", route="llm")
    assert [s.body["response_format"]["type"] for s in fresh.seen][2:] == ["json_object"]
    assert waits == []


def test_a_400_about_something_else_is_not_a_reason_to_drop_the_schema(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(400, {"error": {"message": "messages: too long"}})
    model, _ = planner(fresh)
    with pytest.raises(ModelError, match="HTTP 400"):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")
    assert len(fresh.seen) == 1


def test_nobody_listening_is_a_model_error_after_the_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(base_url=f"http://127.0.0.1:{port}/v1", model=MODEL, job="planner",
                        max_retries=1, backoff_s=0.01, sleep=lambda _s: None)
    model = OpenAICompatiblePlanner(client=client, prompt=load_prompt("planner", "v1"), registry=REGISTRY)
    with pytest.raises(ModelError,
                       match=r"failed after 2 tries; last: cannot reach the server \(ConnectError"):
        model.plan(run_id="run-llm-00000001", text="hi", route="llm")


# ---- real runs on the stack ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_stack(stack: Stack, llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with its planner and responder restarted on a models file whose route `llm`
    plans with the stand-in server, whose route `llm-down` points at a port nobody listens on,
    and whose route `llm-final` plans with the scripted planner and finalizes with the server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    models = tmp_path_factory.mktemp("models") / "models.yaml"
    models.write_text(json.dumps({
        "providers": {
            "scripted": {"kind": "scripted"},
            "fake": {"kind": "openai_compatible", "base_url": llm.base_url, "api_key_env": KEY_VAR,
                     "timeout_s": 5, "max_retries": 1, "backoff_s": 0.05},
            "down": {"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{dead_port}/v1",
                     "timeout_s": 1, "max_retries": 1, "backoff_s": 0.05},
        },
        "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0}, MODEL: PRICES,
                   WRITER_MODEL: WRITER_PRICES},
        "routes": {
            "default": {"planner": {"provider": "scripted", "model": "scripted-v1"}},
            "llm": {"planner": {"provider": "fake", "model": MODEL, "prompt": "v1"}},
            "llm-down": {"planner": {"provider": "down", "model": MODEL}},
            "llm-final": {"planner": {"provider": "scripted", "model": "scripted-v1"},
                          "finalizer": {"provider": "fake", "model": WRITER_MODEL}},
        },
    }))  # JSON is YAML
    env = {"AGENTLOG_MODELS_FILE": str(models), KEY_VAR: KEY}
    with stack.restarted("planner", **env), stack.restarted("responder", **env):
        log = stack.settings.path("logs", "planner.log").read_text()
        assert f"route llm plans with openai_compatible {MODEL} (planner/v1)" in log
        yield stack


def _run(stack: Stack, text: str, route: str) -> dict[str, Any]:
    out = stack.cli_json("submit", text, "--route", route, "--wait")
    run = stack.cli_json("runs", "show", out["run_id"])
    return {**run, "submit_status": out["status"]}


def _payload(run: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in run["events"] if e["event_type"] == kind)["payload"]


def test_a_run_planned_by_the_model_completes_and_records_the_call(llm_stack: Stack, llm: FakeLLM) -> None:
    llm.reset()
    llm.respond = lambda body: Reply(body=completion(plan_for(run_id_of(body)),
                                                     prompt_tokens=1234, completion_tokens=321))
    run = _run(llm_stack, "What is our refund policy for annual plans?", "llm")
    assert run["submit_status"] == "completed", run
    kinds = [e["event_type"] for e in run["events"]]
    assert kinds[:2] == ["RunStarted", "PlanGenerated"] and kinds[-1] == "RunCompleted"
    assert "ToolExecuted" in kinds
    call = _payload(run, "PlanGenerated")["model_call"]
    assert (call["provider"], call["model"], call["prompt_version"]) == (
        "openai_compatible", MODEL, "planner/v1")
    assert (call["input_tokens"], call["output_tokens"]) == (1234, 321)
    assert call["cost_usd"] == pytest.approx(1.234 * 0.001 + 0.321 * 0.002)
    assert call["latency_ms"] >= 0
    (seen,) = llm.seen
    assert seen.headers["Authorization"] == f"Bearer {KEY}"  # the key came from the environment
    assert run_id_of(seen.body) == run["run_id"]


def test_an_invalid_model_plan_ends_the_run_safely_without_tools(llm_stack: Stack, llm: FakeLLM) -> None:
    llm.reset()
    llm.respond = lambda body: Reply(body=completion(plan_for(run_id_of(body), tool="launch_rockets")))
    run = _run(llm_stack, "Launch the rockets, please.", "llm")
    kinds = [e["event_type"] for e in run["events"]]
    assert kinds == ["RunStarted", "PlanRejected", "ResponseFinalized", "RunFailed"], kinds
    rejected = _payload(run, "PlanRejected")
    assert rejected["raw_output"] == plan_for(run["run_id"], tool="launch_rockets")
    assert any("'launch_rockets' is not a registered tool" in e for e in rejected["errors"])
    assert rejected["model_call"]["input_tokens"] == 812
    assert _payload(run, "ResponseFinalized")["text"].startswith("I could not make a safe plan")


def test_a_model_that_cannot_be_reached_ends_the_run_with_the_fallback(llm_stack: Stack) -> None:
    run = _run(llm_stack, "What is our refund policy for annual plans?", "llm-down")
    kinds = [e["event_type"] for e in run["events"]]
    assert kinds == ["RunStarted", "PlanRejected", "ResponseFinalized", "RunFailed"], kinds
    rejected = _payload(run, "PlanRejected")
    (error,) = rejected["errors"]
    assert error.startswith(f"{MODEL_CALL_FAILED}: {MODEL} at http://127.0.0.1:")
    assert "failed after 2 tries; last: cannot reach the server" in error
    assert rejected["raw_output"] == ""
    call = rejected["model_call"]
    assert (call["provider"], call["model"], call["input_tokens"], call["cost_usd"]) == (
        "openai_compatible", MODEL, 0, 0.0)
    assert MODEL_CALL_FAILED in _payload(run, "RunFailed")["reason"]


def test_other_routes_still_plan_with_the_scripted_default(llm_stack: Stack) -> None:
    run = _run(llm_stack, "How many customers do we have in Germany?", "default")
    assert run["submit_status"] == "completed"
    call = _payload(run, "PlanGenerated")["model_call"]
    assert (call["provider"], call["model"], call["cost_usd"]) == ("scripted", "scripted-v1", 0.0)


# ---- the response writer against a real server --------------------------------------------------

WRITER_PRICES = {"input_usd_per_1k": 0.0025, "output_usd_per_1k": 0.01}
REQUEST = "How many customers do we have in Germany? Email them the new prices."
DRAFT = ("Partly done: 1 of 2 step(s) succeeded. You asked: “" + REQUEST + "”\n"
         "- query_sql (s1): 1,284 customers in Germany\n"
         "- send_email (s2): Not done — blocked by policy: bulk email needs approval")
ANSWER = ("You have 1,284 customers in Germany. I did not email them: sending to everyone "
          "needs an approval first.")


def test_a_finalizer_model_writes_the_final_answer_of_a_real_run(llm_stack: Stack, llm: FakeLLM) -> None:
    llm.reset()
    llm.respond = lambda body: Reply(body=completion("Refunds: 30 days, no questions asked.",
                                                     prompt_tokens=200, completion_tokens=10))
    run = _run(llm_stack, "What is our refund policy for annual plans?", "llm-final")
    assert run["submit_status"] == "completed", run
    drafted, final = _payload(run, "ResponseDrafted"), _payload(run, "ResponseFinalized")
    assert drafted["model_call"]["provider"] == "scripted"  # the template drafts
    assert final["text"] == "Refunds: 30 days, no questions asked." == run["answer"]
    call = final["model_call"]
    assert (call["provider"], call["model"], call["prompt_version"]) == (
        "openai_compatible", WRITER_MODEL, "finalizer/v1")
    assert call["cost_usd"] == pytest.approx(0.2 * WRITER_PRICES["input_usd_per_1k"]
                                             + 0.01 * WRITER_PRICES["output_usd_per_1k"])
    (seen,) = llm.seen
    assert "response_format" not in seen.body and drafted["text"] in seen.body["messages"][-1]["content"]


def writer(llm: FakeLLM, **options: Any) -> tuple[OpenAICompatibleWriter, list[float]]:
    client, waits = chat_client(llm, model=WRITER_MODEL, job="finalizer", **options)
    return OpenAICompatibleWriter(client=client, prompt=load_prompt("finalizer", "v1")), waits


def finalizing_config(llm: FakeLLM, **provider: Any) -> ModelsConfig:
    return parse_models_config(json.dumps({
        "providers": {"scripted": {"kind": "scripted"},
                      "big": {"kind": "openai_compatible", "base_url": llm.base_url,
                              "api_key_env": KEY_VAR, "backoff_s": 0.01, **provider}},
        "models": {"scripted-v1": {"input_usd_per_1k": 0, "output_usd_per_1k": 0},
                   WRITER_MODEL: WRITER_PRICES},
        "routes": {"default": {"planner": {"provider": "scripted", "model": "scripted-v1"},
                               "finalizer": {"provider": "big", "model": WRITER_MODEL}}},
    }))


def drafted(run_id: str = "run-llm-00000001") -> Event:
    call = ModelCall(provider="scripted", model="template-v1", prompt_version="respond/1",
                     input_tokens=20, output_tokens=40, latency_ms=0, cost_usd=0.0)
    return Event.of(ResponseDrafted(text=DRAFT, model_call=call), run_id=run_id, seq=0,
                    event_id=f"{run_id}/drafted", tenant_id="t", event_time=utcnow(),
                    actor="responder")


def test_the_writer_returns_the_models_text_with_its_tokens_in_plain_text_mode(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(body=completion(f"\n{ANSWER}\n", prompt_tokens=640,
                                                        completion_tokens=42), delay_s=0.1)
    model, waits = writer(fresh)
    out = model.write(request_text=REQUEST, draft=DRAFT)

    assert out.text == ANSWER  # surrounding blank lines dropped, the rest as written
    assert (out.input_tokens, out.output_tokens) == (640, 42)
    assert 100 <= out.latency_ms < 2000
    assert (model.provider, model.model, model.prompt_version) == (
        "openai_compatible", WRITER_MODEL, "finalizer/v1")
    ((_, body, headers),) = [(s.at, s.body, s.headers) for s in fresh.seen]
    assert "response_format" not in body  # an answer for people, not JSON
    assert body["model"] == WRITER_MODEL and body["temperature"] == 0
    system, user = body["messages"]
    assert system == {"role": "system", "content": load_prompt("finalizer", "v1").text}
    assert user == {"role": "user", "content": writer_message(request_text=REQUEST, draft=DRAFT)}
    assert f"<request>\n{REQUEST}\n</request>" in user["content"]
    assert f"<draft>\n{DRAFT}\n</draft>" in user["content"]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["User-Agent"] == "agentlog-finalizer"
    assert waits == []


def test_the_writer_retries_a_429_honoring_retry_after(fresh: FakeLLM) -> None:
    fresh.reset(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}))
    fresh.respond = lambda _body: Reply(body=completion(ANSWER))
    model, waits = writer(fresh)
    out = model.write(request_text=REQUEST, draft=DRAFT)
    assert out.text == ANSWER
    assert waits == [0.3] and len(fresh.seen) == 2
    assert fresh.seen[1].at - fresh.seen[0].at >= 0.3
    assert out.latency_ms >= 300  # the call's latency includes the wait


@pytest.mark.parametrize(("content", "expected"), [
    ("", "answered an empty response"),
    ("  \n\t ", "answered an empty response"),
    (None, r"answered no content \(finish_reason 'stop'\)"),
])
def test_an_empty_answer_is_a_model_error(fresh: FakeLLM, content: str | None, expected: str) -> None:
    fresh.respond = lambda _body: Reply(body=completion(content))
    model, waits = writer(fresh)
    with pytest.raises(ModelError, match=expected):
        model.write(request_text=REQUEST, draft=DRAFT)
    assert (len(fresh.seen), waits) == (1, [])  # the model answered: asking again is no cure


def test_the_writer_gives_up_after_its_retries(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(503, {"error": {"message": "overloaded"}})
    model, waits = writer(fresh, max_retries=1)
    with pytest.raises(ModelError, match=rf"{WRITER_MODEL} at .* failed after 2 tries; last: HTTP 503"):
        model.write(request_text=REQUEST, draft=DRAFT)
    assert len(fresh.seen) == 2 and len(waits) == 1


def test_a_configured_finalizer_writes_the_final_response_with_a_priced_call(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(body=completion(ANSWER, prompt_tokens=1200,
                                                        completion_tokens=300))
    config = finalizing_config(fresh)
    model = writer_for("support", config, api_keys={KEY_VAR: KEY})
    trigger = drafted()
    event, error = final_response(trigger, request_text=REQUEST, writer=model, config=config,
                                  now=utcnow())
    assert error is None
    assert isinstance(event.payload, ResponseFinalized)
    assert event.payload.text == ANSWER
    call = event.payload.model_call
    assert call is not None
    assert (call.provider, call.model, call.prompt_version) == (
        "openai_compatible", WRITER_MODEL, "finalizer/v1")
    assert (call.input_tokens, call.output_tokens) == (1200, 300)
    assert call.cost_usd == pytest.approx(1.2 * 0.0025 + 0.3 * 0.01)
    assert (event.causation_id, event.actor) == (trigger.event_id, "responder")
    assert fresh.seen[0].headers["Authorization"] == f"Bearer {KEY}"


def test_a_finalizer_that_cannot_answer_sends_the_draft_and_says_why(fresh: FakeLLM) -> None:
    fresh.respond = lambda _body: Reply(503, {"error": {"message": "overloaded"}})
    config = finalizing_config(fresh, max_retries=1)
    model = writer_for("default", config, api_keys={KEY_VAR: KEY})
    event, error = final_response(drafted(), request_text=REQUEST, writer=model, config=config,
                                  now=utcnow())
    assert event.payload == ResponseFinalized(text=DRAFT, model_call=None)
    assert error is not None and error.startswith(f"{WRITER_MODEL} at {fresh.base_url}/chat/completions "
                                                  "failed after 2 tries; last: HTTP 503")
    assert re.search(r"\(gave up after \d+ ms\)$", error), error
    assert len(fresh.seen) == 2
