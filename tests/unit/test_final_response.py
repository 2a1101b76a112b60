"""The final response: the finalizer's text with its priced call, or the draft when there is
no finalizer or it fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from processors.models import ModelError, WrittenResponse, final_response
from processors.results import answer
from schemas.events import Event, ModelCall, ResponseDrafted, ResponseFinalized, RunStarted
from streams.models_config import parse_models_config
from tests.factories import CALL, T0, envelope

REQUEST = "How many customers do we have in Germany? Email them the new prices."
DRAFT = ("Partly done: 1 of 2 step(s) succeeded. You asked: “" + REQUEST + "”\n"
         "- query_sql (s1): 1,284 customers in Germany\n"
         "- send_email (s2): Not done — blocked by policy: bulk email needs approval")
WRITTEN = ("You have 1,284 customers in Germany. I did not email them: sending to everyone "
           "needs an approval first.")
NOW = T0 + timedelta(seconds=9)

CONFIG = parse_models_config("""
providers:
  scripted: {kind: scripted}
  big: {kind: openai_compatible, base_url: 'http://127.0.0.1:9/v1'}
models:
  scripted-v1: {input_usd_per_1k: 0, output_usd_per_1k: 0}
  big-model: {input_usd_per_1k: 0.0025, output_usd_per_1k: 0.01}
routes:
  default:
    planner: {provider: scripted, model: scripted-v1}
    finalizer: {provider: big, model: big-model}
""")


class FakeWriter:
    """A ResponseWriter answering `result` (a WrittenResponse, or an exception to raise)."""

    provider = "openai_compatible"
    model = "big-model"
    prompt_version = "finalizer/v1"

    def __init__(self, result: WrittenResponse | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, str]] = []

    def write(self, *, request_text: str, draft: str) -> WrittenResponse:
        self.calls.append((request_text, draft))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def drafted() -> Event:
    return envelope(ResponseDrafted(text=DRAFT, model_call=CALL), run_id="run-0001", seq=0,
                    event_id="run-0001/drafted", actor="responder")


def ticking(*readings: float) -> Callable[[], float]:
    """A clock answering `readings` in turn."""
    it: Iterator[float] = iter(readings)
    return lambda: next(it)


def finalized(event: Event) -> ResponseFinalized:
    assert event.event_type == "ResponseFinalized"
    assert isinstance(event.payload, ResponseFinalized)
    return event.payload


def test_with_no_writer_the_draft_is_the_final_answer() -> None:
    event, error = final_response(drafted(), request_text=REQUEST, writer=None, config=CONFIG,
                                  now=NOW)
    assert error is None
    assert finalized(event) == ResponseFinalized(text=DRAFT, model_call=None)
    # An answer to the draft, as every worker's result is: the orchestrator matches it so.
    expected = answer(drafted(), ResponseFinalized(text=DRAFT), actor="responder", now=NOW)
    assert event == expected
    assert (event.causation_id, event.actor, event.event_time, event.tenant_id) == (
        "run-0001/drafted", "responder", NOW, "acme")


def test_a_written_answer_is_final_with_its_call_priced_from_the_table() -> None:
    writer = FakeWriter(WrittenResponse(text=WRITTEN, input_tokens=1200, output_tokens=300,
                                        latency_ms=1840))
    event, error = final_response(drafted(), request_text=REQUEST, writer=writer, config=CONFIG,
                                  now=NOW, clock=ticking(10.0, 11.0))
    assert error is None
    assert writer.calls == [(REQUEST, DRAFT)]
    out = finalized(event)
    assert out.text == WRITTEN
    assert out.model_call is not None
    assert out.model_call.cost_usd == pytest.approx(1.2 * 0.0025 + 0.3 * 0.01)
    assert out.model_call == ModelCall(
        provider="openai_compatible", model="big-model", prompt_version="finalizer/v1",
        input_tokens=1200, output_tokens=300, latency_ms=1840,  # as the writer timed its call
        cost_usd=out.model_call.cost_usd)
    assert (event.causation_id, event.actor, event.event_time) == ("run-0001/drafted", "responder", NOW)


def test_a_failed_writer_sends_the_draft_and_says_why() -> None:
    writer = FakeWriter(ModelError("big-model at http://x/v1/chat/completions failed after 3 tries; "
                                   "last: HTTP 503: overloaded"))
    event, error = final_response(drafted(), request_text=REQUEST, writer=writer, config=CONFIG,
                                  now=NOW, clock=ticking(5.0, 7.25))
    assert finalized(event) == ResponseFinalized(text=DRAFT, model_call=None)
    assert error == ("big-model at http://x/v1/chat/completions failed after 3 tries; "
                     "last: HTTP 503: overloaded (gave up after 2250 ms)")


@pytest.mark.parametrize("text", ["", " \n\t"])
def test_a_blank_written_answer_counts_as_a_failure(text: str) -> None:
    writer = FakeWriter(WrittenResponse(text=text, input_tokens=900, output_tokens=0, latency_ms=5))
    event, error = final_response(drafted(), request_text=REQUEST, writer=writer, config=CONFIG,
                                  now=NOW, clock=ticking(1.0, 1.0))
    assert finalized(event) == ResponseFinalized(text=DRAFT, model_call=None)
    assert error == "big-model wrote an empty answer (gave up after 0 ms)"


def test_written_or_not_the_answer_has_one_id_so_a_retried_worker_repeats_it() -> None:
    written = FakeWriter(WrittenResponse(text=WRITTEN, input_tokens=1, output_tokens=1, latency_ms=1))
    failed = FakeWriter(ModelError("down"))
    ids = {final_response(drafted(), request_text=REQUEST, writer=w, config=CONFIG, now=NOW)[0].event_id
           for w in (None, written, failed)}
    assert len(ids) == 1


def test_a_bug_in_the_writer_is_not_taken_for_a_model_failure() -> None:
    writer = FakeWriter(KeyError("choices"))
    with pytest.raises(KeyError):
        final_response(drafted(), request_text=REQUEST, writer=writer, config=CONFIG, now=NOW)


def test_an_unpriced_writer_model_is_an_error_not_a_free_call() -> None:
    writer = FakeWriter(WrittenResponse(text=WRITTEN, input_tokens=1, output_tokens=1, latency_ms=1))
    writer.model = "gpt-9"
    with pytest.raises(ValueError, match="'gpt-9' has no price"):
        final_response(drafted(), request_text=REQUEST, writer=writer, config=CONFIG, now=NOW)


def test_only_a_response_draft_can_be_finalized() -> None:
    started = envelope(RunStarted(text=REQUEST, route="default", idempotency_key="k"))
    with pytest.raises(TypeError, match="needs a ResponseDrafted, got RunStarted"):
        final_response(started, request_text=REQUEST, writer=None, config=CONFIG, now=NOW)
