"""Response builder service: ResponseRequested -> ResponseDrafted -> ResponseFinalized.

The draft is written from the recorded observations by a template; the final answer by the
route's finalizer model when the models file names one (a stronger model than the planner),
otherwise the draft is final. A finalizer that fails leaves the draft as the answer (logged),
and no finalizer is called once the run's or the tenant's budget is spent.
It folds its runs from the log to know each run's route, request and why it stopped early.
"""

from __future__ import annotations

from collections.abc import Iterable

from processors.models import final_response, writer_for
from processors.responder import draft_response
from processors.state import RunState
from schemas.events import Event
from streams.budgets import tenant_spend_today
from streams.models_config import api_keys_from_env, models_config_or_exit
from streams.service import ServiceContext, utcnow
from streams.settings import Settings, load_settings
from streams.worker import Refused, run_worker


def no_budget_for_finalizer(settings: Settings, state: RunState) -> str | None:
    """Why a finalizer call must not spend more (checked before the call), or None."""
    if state.stopped is not None:
        return state.stopped
    if state.budget_usd and state.metrics.cost_usd >= state.budget_usd:
        return f"the run's budget ${state.budget_usd:.4f} is spent"
    limit = settings.tenant_budget(state.tenant_id)
    if limit is not None:
        spent = tenant_spend_today(settings, state.tenant_id)
        if spent is not None and spent >= limit:
            return f"tenant {state.tenant_id} spent ${spent:.4f} of its ${limit:.4f} daily budget"
    return None


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("responder", settings)
    config = models_config_or_exit(settings.models_file, ctx.log)
    keys = api_keys_from_env(config)
    writers = {route: writer_for(route, config, api_keys=keys) for route in config.routes}

    def handle(event: Event, state: RunState | None) -> Iterable[Event]:
        if state is None:
            raise Refused(f"{event.event_type} for run {event.run_id}, which has no history")
        if event.event_type == "ResponseRequested":
            yield draft_response(event, now=utcnow(), stopped=state.stopped)
            return
        writer = writers.get(state.route, writers.get("default"))
        if writer is not None and (why := no_budget_for_finalizer(settings, state)) is not None:
            ctx.log.info("run %s: the draft is final, no finalizer call: %s", event.run_id, why)
            writer = None
        final, error = final_response(event, request_text=state.text, writer=writer, config=config,
                                      now=utcnow())
        if error is not None:
            ctx.log.warning("run %s: finalizer failed, the draft is the answer: %s", event.run_id, error)
        yield final

    run_worker(ctx, handles=frozenset({"ResponseRequested", "ResponseDrafted"}), handle=handle, fold=True,
               concurrency=settings.worker_concurrency)


if __name__ == "__main__":
    main()
