"""No finalizer model is called once a run's budget is spent or the run stopped for budget."""

from __future__ import annotations

from dataclasses import replace

from processors.state import fold
from schemas.events import BudgetExceeded
from streams.services.responder import no_budget_for_finalizer
from streams.settings import Settings
from tests.factories import envelope
from tests.harness import Run, plan

SETTINGS = Settings(tenant_daily_budget_usd=None)


def _planned(budget: float) -> Run:
    r = Run()
    r.request()
    r.reply("RunStarted", plan(("search_docs", {"query": "x"}), budget=budget))
    return r


def test_a_run_within_budget_may_call_the_finalizer():
    assert no_budget_for_finalizer(SETTINGS, _planned(0.5).state) is None


def test_a_run_whose_budget_is_spent_gets_no_finalizer_call():
    state = _planned(0.01).state
    spent = replace(state, metrics=state.metrics.model_copy(update={"cost_usd": 0.01}))
    assert "budget $0.0100 is spent" in no_budget_for_finalizer(SETTINGS, spent)


def test_a_run_stopped_for_budget_gets_no_finalizer_call():
    r = _planned(0.5)
    stop = envelope(BudgetExceeded(limit="budget_usd", limit_value=0.5, spent=0.6, reason="over"),
                    run_id=r.state.run_id, seq=r.state.seq + 1)
    state = fold([*r.log, stop])
    assert "budget_usd exceeded" in no_budget_for_finalizer(SETTINGS, state)
