"""Model adapters for the planner and the finalizer, and how a route's configuration picks them.

`planner_for` builds the `PlannerModel` a route's configuration names; `plan_with` makes the
planning call and records it (provider, model, prompt version, tokens, latency, cost) in the
PlanGenerated or PlanRejected it returns. A failed call becomes a PlanRejected saying so.

`writer_for` builds the route's `ResponseWriter`, if it has a finalizer; `final_response` turns
a ResponseDrafted into the ResponseFinalized, written by that model and recorded likewise. A
failed call, or no finalizer, sends the draft as it is: a run's answer never waits on it.

The HTTP adapters are imported only when a route needs them, so replay and the recorded
provider run without an HTTP client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from processors.models.config import (
    DEFAULT_ROUTE,
    ModelChoice,
    ModelPrice,
    ModelsConfig,
    OpenAICompatibleProvider,
    RouteModels,
    ScriptedProvider,
)
from processors.models.errors import MODEL_CALL_FAILED, ModelError, NotRecorded
from processors.models.ports import ResponseWriter, WrittenResponse
from processors.models.recorded import RecordedPlanner, Recording
from processors.planner_scripted import ScriptedPlanner
from processors.planning import ACTOR, plan_result
from processors.ports import PlannerModel

if TYPE_CHECKING:  # the HTTP client is imported only where a route needs it
    from processors.models.chat import ChatClient
from processors.prompts import load_prompt
from processors.responder import ACTOR as RESPONDER
from processors.results import answer
from processors.tools.registry import ToolRegistry, default_registry
from schemas.events import (
    Event,
    MemoryRetrieved,
    ModelCall,
    PlanRejected,
    ResponseDrafted,
    ResponseFinalized,
    RunStarted,
)

__all__ = [
    "DEFAULT_ROUTE",
    "MODEL_CALL_FAILED",
    "ModelChoice",
    "ModelError",
    "ModelPrice",
    "ModelsConfig",
    "NotRecorded",
    "OpenAICompatibleProvider",
    "RecordedPlanner",
    "Recording",
    "ResponseWriter",
    "RouteModels",
    "ScriptedProvider",
    "WrittenResponse",
    "cost_usd",
    "final_response",
    "plan_with",
    "planner_for",
    "writer_for",
]


def planner_for(
    route: str,
    config: ModelsConfig,
    *,
    registry: ToolRegistry | None = None,
    api_keys: Mapping[str, str] | None = None,
) -> PlannerModel:
    """The planner model of `route` (or of the default route) as `config` declares it.

    registry: the tools a plan may use, shown in model prompts (default: the default registry).
    api_keys: API keys by environment variable name, as the service read them; a provider whose
        key is missing still builds, and each of its calls fails with a ModelError naming it.
    """
    choice = config.planner(route)
    provider = config.provider(choice.provider)
    if isinstance(provider, ScriptedProvider):
        return ScriptedPlanner()
    # Imported here: only routes with a model provider need httpx.
    from processors.models.openai_compatible import OpenAICompatiblePlanner

    return OpenAICompatiblePlanner(
        client=_client(provider, choice.model, "planner", api_keys),
        prompt=load_prompt("planner", choice.prompt),
        registry=registry if registry is not None else default_registry(),
    )


def writer_for(
    route: str,
    config: ModelsConfig,
    *,
    api_keys: Mapping[str, str] | None = None,
) -> ResponseWriter | None:
    """The finalizer of `route` (or of the default route) as `config` declares it; None when
    neither has one, and the response builder's draft is the final answer.

    api_keys: API keys by environment variable name, as the service read them; a provider whose
        key is missing still builds, and each of its calls fails with a ModelError naming it.
    """
    choice = config.finalizer(route)
    if choice is None:
        return None
    provider = config.provider(choice.provider)
    if not isinstance(provider, OpenAICompatibleProvider):
        # ModelsConfig refuses this; only one built past its checks (model_construct) gets here.
        raise ValueError(f"finalizer of route {route!r}: provider {choice.provider!r} cannot write")
    # Imported here: only routes with a finalizer need httpx.
    from processors.models.writer import OpenAICompatibleWriter

    return OpenAICompatibleWriter(client=_client(provider, choice.model, "finalizer", api_keys),
                                  prompt=load_prompt("finalizer", choice.prompt))


def _client(provider: OpenAICompatibleProvider, model: str, job: str,
            api_keys: Mapping[str, str] | None) -> ChatClient:
    from processors.models.chat import ChatClient

    key_env = provider.api_key_env
    return ChatClient(
        base_url=provider.base_url, model=model, job=job,
        api_key=(api_keys or {}).get(key_env) if key_env else None, api_key_env=key_env,
        timeout_s=provider.timeout_s, max_retries=provider.max_retries,
        backoff_s=provider.backoff_s, max_backoff_s=provider.max_backoff_s,
    )


def cost_usd(config: ModelsConfig, model: str, input_tokens: int, output_tokens: int) -> float:
    """What a call of `model` with these token counts costs by the price table."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token counts cannot be negative ({input_tokens}, {output_tokens})")
    price = config.price(model)
    cost = input_tokens / 1000 * price.input_usd_per_1k + output_tokens / 1000 * price.output_usd_per_1k
    return round(cost, 9)  # sub-nano-dollar float noise only makes equal costs differ


def plan_with(
    started: Event,
    model: PlannerModel,
    *,
    config: ModelsConfig,
    registry: ToolRegistry,
    now: Callable[[], datetime],
    clock: Callable[[], float] = time.perf_counter,
) -> Event:
    """Ask `model` for the plan of the RunStarted `started` (or, in a memory run, of the
    MemoryRetrieved that follows it); PlanGenerated or PlanRejected.

    config: prices the call (a RecordedPlanner's calls keep their recorded ModelCall).
    registry: what the plan is validated against.
    now: the event time of the answer, read after the call.
    clock: seconds, for the call's latency.
    """
    request = started.payload
    if not isinstance(request, RunStarted | MemoryRetrieved):
        raise TypeError(f"plan_with needs a RunStarted, got {started.event_type} "
                        "(or a MemoryRetrieved in a memory run)")
    begun = clock()
    try:
        memories = request.memories if isinstance(request, MemoryRetrieved) else []
        # Only when there are some: a run without memory calls a planner exactly as before.
        given = {"memories": memories} if memories else {}
        raw = model.plan(run_id=started.run_id, text=request.text, route=request.route, **given)
        tokens_in, tokens_out = model.usage(request.text, raw)
    except ModelError as exc:
        # The run must end, safely: the orchestrator answers a PlanRejected with its fallback.
        call = (model.model_call(started.run_id) if isinstance(model, RecordedPlanner)
                else _call(model, latency_ms=_ms(clock() - begun), tokens=(0, 0), cost=0.0))
        rejected = PlanRejected(errors=[f"{MODEL_CALL_FAILED}: {exc}"], raw_output="",
                                model_call=call)
        return answer(started, rejected, actor=ACTOR, now=now())
    if isinstance(model, RecordedPlanner):
        # Replay reports the call as it was made, so a replayed plan event equals the original.
        call = model.model_call(started.run_id)
    else:
        call = _call(model, latency_ms=_ms(clock() - begun), tokens=(tokens_in, tokens_out),
                     cost=cost_usd(config, model.model, tokens_in, tokens_out))
    return plan_result(started, raw, model_call=call, registry=registry, now=now())


def final_response(
    drafted: Event,
    *,
    request_text: str,
    writer: ResponseWriter | None,
    config: ModelsConfig,
    now: datetime,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Event, str | None]:
    """The ResponseFinalized answering the ResponseDrafted `drafted`, and why the writer failed
    (None when it did not, or when there is no writer).

    request_text: what the user asked, given to the writer with the draft.
    writer: the route's finalizer (`writer_for`); None sends the draft as the final answer.
    config: prices the writer's call.
    now: the event time of the answer.
    clock: seconds, to time a call that failed (a written response reports its own latency).

    The answer is the written text with its ModelCall; with no writer, or when the writer
    raises ModelError or writes nothing, it is the draft with no ModelCall (the draft's own
    call is on the ResponseDrafted already). The error returned then is the ModelError's
    message and how long the call took, for the service to log.
    """
    draft = drafted.payload
    if not isinstance(draft, ResponseDrafted):
        raise TypeError(f"final_response needs a ResponseDrafted, got {drafted.event_type}")
    as_drafted = answer(drafted, ResponseFinalized(text=draft.text, model_call=None),
                        actor=RESPONDER, now=now)
    if writer is None:
        return as_drafted, None
    begun = clock()
    try:
        written = writer.write(request_text=request_text, draft=draft.text)
        if not written.text.strip():
            raise ModelError(f"{writer.model} wrote an empty answer")
    except ModelError as exc:
        # The user still gets an answer: the draft says everything the writer would have.
        return as_drafted, f"{exc} (gave up after {_ms(clock() - begun)} ms)"
    call = _call(writer, latency_ms=written.latency_ms,
                 tokens=(written.input_tokens, written.output_tokens),
                 cost=cost_usd(config, writer.model, written.input_tokens, written.output_tokens))
    return answer(drafted, ResponseFinalized(text=written.text, model_call=call),
                  actor=RESPONDER, now=now), None


def _call(model: PlannerModel | ResponseWriter, *, latency_ms: int, tokens: tuple[int, int],
          cost: float) -> ModelCall:
    return ModelCall(provider=model.provider, model=model.model, prompt_version=model.prompt_version,
                     input_tokens=tokens[0], output_tokens=tokens[1], latency_ms=latency_ms,
                     cost_usd=cost)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
