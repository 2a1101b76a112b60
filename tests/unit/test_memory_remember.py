"""What a finished run leaves in memory: the exchange of a run that did something, a fact the
user asked to keep, and nothing from a run that was refused or failed."""

from __future__ import annotations

from processors.memory.remember import memories_of_run, retrieval_query
from schemas.events import ModelCall, ResponseFinalized, RunCompleted, RunFailed, RunStarted
from tests.factories import envelope

CALL = ModelCall(provider="scripted", model="m", prompt_version="p", input_tokens=1, output_tokens=1,
                 cost_usd=0.0, latency_ms=1)


def run(text: str, answer: str | None, *, outcome: str | None = "succeeded"):
    payloads = [RunStarted(text=text, route="default", idempotency_key="k")]
    if answer is not None:
        payloads.append(ResponseFinalized(text=answer, model_call=CALL))
    payloads.append(RunCompleted(outcome=outcome, tool_calls=1, cost_usd=0.0, duration_ms=5) if outcome
                    else RunFailed(stage="planning", reason="no plan", cost_usd=0.0))
    return [envelope(p, run_id="run-1", seq=i) for i, p in enumerate(payloads, 1)]


def test_a_completed_run_leaves_its_exchange():
    [item] = memories_of_run(run("How many customers in Germany?", "There are 42 customers in Germany."))
    assert item.text == "Asked: How many customers in Germany?\nAnswered: There are 42 customers in Germany."
    assert item.metadata == {"kind": "exchange", "run_id": "run-1"}


def test_a_fact_to_remember_is_kept_on_its_own():
    items = memories_of_run(run("Remember that our project code is ORION-7", "Noted."))
    assert items[0].text == "our project code is ORION-7"
    assert items[0].metadata["kind"] == "fact"


def test_refused_failed_or_unfinished_runs_leave_nothing():
    assert memories_of_run(run("drop the orders table", "I will not.", outcome="refused")) == []
    assert memories_of_run(run("anything", None, outcome=None)) == []
    assert memories_of_run(run("anything", "x")[:2]) == []


def test_the_query_is_the_request():
    assert retrieval_query(RunStarted(text="what is our project code?", route="r", idempotency_key="k")) == \
        "what is our project code?"
