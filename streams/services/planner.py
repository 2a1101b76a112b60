"""Planner service: RunStarted -> PlanGenerated | PlanRejected, by the route's planner model.

A memory run is planned once its memories are in (MemoryRetrieved, which carries the request and
its route), not from its RunStarted.

The model configuration (`AGENTLOG_MODELS_FILE`) names each route's provider and model; a route
it does not list uses `default` (the scripted planner as shipped). Every call is recorded with
provider, model, prompt version, tokens, latency and cost. A model that cannot be reached
becomes a PlanRejected saying the call failed, so the run still ends with the safe fallback.
"""

from __future__ import annotations

from collections.abc import Iterable

from processors.models import DEFAULT_ROUTE, ModelsConfig, plan_with, planner_for
from processors.planning import ACTOR
from processors.ports import PlannerModel
from processors.results import answer
from processors.state import RunState
from processors.tools.registry import ToolRegistry
from schemas.events import BudgetExceeded, Event, MemoryRetrieved, PlanRejected, RunStarted
from streams.budgets import tenant_spend_today
from streams.models_config import api_keys_from_env, missing_api_keys, models_config_or_exit
from streams.service import ServiceContext, utcnow
from streams.settings import Settings, load_settings
from streams.tools_config import tool_registry
from streams.worker import run_worker

__all__ = ["route_planners", "main"]


def route_planners(config: ModelsConfig, *, registry: ToolRegistry,
                   api_keys: dict[str, str]) -> dict[str, PlannerModel]:
    """A planner model per declared route; routes with the same choice share one (and its
    HTTP connections)."""
    built: dict[tuple[str, str, str], PlannerModel] = {}
    planners: dict[str, PlannerModel] = {}
    for route in config.routes:
        choice = config.planner(route)
        key = (choice.provider, choice.model, choice.prompt)
        if key not in built:
            built[key] = planner_for(route, config, registry=registry, api_keys=api_keys)
        planners[route] = built[key]
    return planners


def _over_daily_budget(settings: Settings, event: Event) -> BudgetExceeded | None:
    """BudgetExceeded when the tenant has spent its day's budget (checked before any model call)."""
    limit = settings.tenant_budget(event.tenant_id)
    if limit is None:
        return None
    spent = tenant_spend_today(settings, event.tenant_id)
    if spent is None or spent < limit:
        return None  # an unreadable store does not stop work; the warning is logged
    return BudgetExceeded(limit="tenant_daily_usd", limit_value=limit, spent=round(spent, 6),
                          reason=f"tenant {event.tenant_id} spent ${spent:.4f} of its "
                                 f"${limit:.4f} daily budget")


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("planner", settings)
    config = models_config_or_exit(settings.models_file, ctx.log)
    registry = tool_registry(settings)
    planners = route_planners(config, registry=registry, api_keys=api_keys_from_env(config))
    for name in missing_api_keys(config):
        ctx.log.warning("%s is not set: calls to the providers that need it will fail", name)
    for route, model in planners.items():
        ctx.log.info("route %s plans with %s %s (%s)", route, model.provider, model.model,
                     model.prompt_version)

    def handle(event: Event, _state: RunState | None) -> Iterable[Event]:
        request = event.payload
        assert isinstance(request, RunStarted | MemoryRetrieved)
        if isinstance(request, RunStarted) and request.memory:
            return  # the memory service answers it; its MemoryRetrieved is planned
        over = _over_daily_budget(settings, event)
        if over is not None:
            ctx.log.warning("run %s: %s", event.run_id, over.reason)
            yield answer(event, over, actor=ACTOR, now=utcnow())
            return
        model = planners.get(request.route) or planners[DEFAULT_ROUTE]
        result = plan_with(event, model, config=config, registry=registry, now=utcnow)
        if isinstance(result.payload, PlanRejected):
            ctx.log.warning("run %s (route %s, %s): plan rejected: %s", event.run_id,
                            request.route, model.model, "; ".join(result.payload.errors)[:500])
        yield result

    run_worker(ctx, handles=frozenset({"RunStarted", "MemoryRetrieved"}), handle=handle,
               concurrency=settings.worker_concurrency)


if __name__ == "__main__":
    main()
