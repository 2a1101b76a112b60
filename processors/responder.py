"""The response builder: turns what the run observed into the answer the user reads."""

from __future__ import annotations

from datetime import datetime

from processors.results import answer
from schemas.events import Event, ModelCall, ObservationCaptured, ResponseDrafted, ResponseRequested

__all__ = ["draft_response", "compose", "ACTOR", "TEMPLATE_MODEL"]

ACTOR = "responder"
TEMPLATE_MODEL = "template-v1"

_LEAD = {
    "ok": "",
    "denied": "Not done — blocked by policy: ",
    "rejected": "Not done — rejected: ",
    "error": "Failed: ",
    "timeout": "Failed: ",
}


_MEMORY_LINES = 3
"""Memories quoted in an answer: the best ranked; the rest are in the run's MemoryRetrieved."""


def _line(o: ObservationCaptured) -> str:
    return f"- {o.tool} ({o.step_id}): {_LEAD.get(o.status, '')}{o.summary}"


def compose(request: ResponseRequested, *, stopped: str | None = None) -> str:
    """A deterministic answer: what was asked, each step's outcome, what the tenant's memory
    holds on it, and why it stopped early."""
    obs = request.observations
    tail = [f"From memory: {m}" for m in request.memories[:_MEMORY_LINES]]
    tail += [f"Stopped early — {stopped}."] if stopped else []
    if not obs:
        return "\n".join([f"I could not act on “{request.request_text}”: no step was allowed to run.",
                          *tail])
    done = sum(o.status == "ok" for o in obs)
    head = ("Done." if done == len(obs)
            else f"Partly done: {done} of {len(obs)} step(s) succeeded." if done
            else "Nothing was done.")
    return "\n".join([f"{head} You asked: “{request.request_text}”", *map(_line, obs), *tail])


def draft_response(requested: Event, *, now: datetime, stopped: str | None = None) -> Event:
    """The template draft; `stopped` is the run's reason for stopping early, if any."""
    p = requested.payload
    assert isinstance(p, ResponseRequested)
    text = compose(p, stopped=stopped)
    call = ModelCall(provider="scripted", model=TEMPLATE_MODEL, prompt_version="respond/1",
                     input_tokens=sum(len(o.summary.split()) for o in p.observations),
                     output_tokens=len(text.split()), latency_ms=0, cost_usd=0.0)
    return answer(requested, ResponseDrafted(text=text, model_call=call), actor=ACTOR, now=now)
