"""Planner service: RunStarted -> PlanGenerated | PlanRejected (scripted model by default)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from processors.planner_scripted import ScriptedPlanner
from processors.planning import plan_result
from processors.tools.registry import default_registry
from processors.state import RunState
from schemas.events import Event, ModelCall, RunStarted
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.worker import run_worker


def main() -> None:
    ctx = ServiceContext("planner", load_settings())
    model = ScriptedPlanner()
    registry = default_registry()

    def handle(event: Event, _state: RunState | None) -> Iterable[Event]:
        p = event.payload
        assert isinstance(p, RunStarted)
        started = time.perf_counter()
        raw = model.plan(run_id=event.run_id, text=p.text, route=p.route)
        latency = int((time.perf_counter() - started) * 1000)
        tokens_in, tokens_out = model.usage(p.text, raw)
        call = ModelCall(provider="scripted", model=model.model, prompt_version=model.prompt_version,
                         input_tokens=tokens_in, output_tokens=tokens_out, latency_ms=latency,
                         cost_usd=0.0)
        yield plan_result(event, raw, model_call=call, registry=registry, now=utcnow())

    run_worker(ctx, handles=frozenset({"RunStarted"}), handle=handle)


if __name__ == "__main__":
    main()
