"""Memory in a run's timeline, decided by the pure core: a memory run retrieves before it plans
and stores before it completes, a memory service that does not answer never blocks it, a run
without memory is as before, and a memory run replays exactly from its recorded answers."""

from __future__ import annotations

from datetime import timedelta

from processors.guard import decide_call
from processors.memory.answers import RETRIEVED_K, not_retrieved, retrieved, stored
from processors.memory.records import MemoryRecord
from processors.memory.remember import memories_of_finished
from processors.models import final_response, plan_with
from processors.orchestrator import OrchestratorConfig
from processors.planner_scripted import ScriptedPlanner
from processors.replay import Candidate, RecordedRun, check_run, simulate
from processors.replay.exact import inbox_record
from processors.responder import compose, draft_response
from processors.results import answer
from processors.snapshot import from_snapshot, to_snapshot
from processors.state import fold
from schemas.codec import EventCodec
from schemas.events import (
    MemoryRetrieved,
    MemoryStored,
    PlanRejected,
    ResponseDrafted,
    ResponseFinalized,
    RetrievedMemory,
    RunRequested,
    RunStarted,
    StoredMemory,
)
from tests.benchmarks.bench_replay import today
from tests.factories import CALL, T0, envelope
from tests.harness import CONFIG, RUN, Run, executed, plan

FACT = "Our project code is ZEBRA-42, owner <PERSON>."
TODAY = today()


def memory_run(text: str = "what is our project code?") -> Run:
    r = Run()
    r.send(envelope(RunRequested(text=text, idempotency_key="k1", memory=True, memory_subject="ana"),
                    run_id=RUN, seq=0, actor="gateway", event_id="req-k1"))
    return r


def found(*texts: str) -> MemoryRetrieved:
    return MemoryRetrieved(status="ok", text="what is our project code?", route="default",
                           memories=[RetrievedMemory(memory_id=f"m{i}", text=t, score=1.0 / i,
                                                     expires_at=T0 + timedelta(days=30))
                                     for i, t in enumerate(texts, 1)],
                           retriever_version="bm25s-hybrid-1")


def kept_one() -> MemoryStored:
    return MemoryStored(status="ok", memories=[StoredMemory(memory_id="m9", text="Asked: …",
                                                            expires_at=T0 + timedelta(days=30))])


def test_a_memory_run_retrieves_before_it_plans_and_stores_before_it_completes() -> None:
    r = memory_run()
    assert r.types() == ["RunStarted"] and r.state.memory and r.state.memory_subject == "ana"
    # The planner does not plan a memory run from its RunStarted: memory answers it first.
    refused = r.reply("RunStarted", plan(("search_docs", {"query": "code"})), actor="planner")
    assert refused.events == () and refused.invalid
    r.reply("RunStarted", found(FACT), actor="memory")
    assert r.types() == ["RunStarted", "MemoryRetrieved"]
    r.reply("MemoryRetrieved", plan(("search_docs", {"query": "code"})), actor="planner")
    assert r.types()[2:4] == ["PlanGenerated", "ToolProposed"]
    assert r.last("PlanGenerated").causation_id == r.last("MemoryRetrieved").event_id
    r.reply("ToolProposed", decide_call(r.last("ToolProposed"), policy=TODAY.policy, now=r.clock,
                                        approval_ttl=timedelta(days=1)).payload, actor="policy_guard")
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    requested = r.last("ResponseRequested").payload
    assert requested.memories == [FACT]
    assert f"From memory: {FACT}" in compose(requested)
    r.reply("ResponseRequested", ResponseDrafted(text="ZEBRA-42", model_call=CALL), actor="responder")
    r.reply("ResponseDrafted", ResponseFinalized(text="ZEBRA-42"), actor="responder")
    assert r.types()[-1] == "ResponseFinalized" and not r.state.terminal  # waits for memory to store
    r.reply("ResponseFinalized", kept_one(), actor="memory")
    assert r.types()[-2:] == ["MemoryStored", "RunCompleted"]
    assert r.log[-1].payload.outcome == "succeeded"
    assert fold(r.log) == r.state


def test_a_memory_service_that_does_not_answer_never_blocks_the_run() -> None:
    r = memory_run()
    assert r.fire_timers(1.0) == []  # within the memory service's own short limit
    assert r.fire_timers(1.5) == ["StepTimedOut"]
    assert r.types() == ["RunStarted", "StepTimedOut", "MemoryRetrieved"]
    gave_up = r.log[-1]
    assert gave_up.actor == "orchestrator" and gave_up.payload.status == "timeout"
    assert gave_up.payload.memories == [] and "2 s" in (gave_up.payload.reason or "")
    # No retry: a late answer of the service is dropped, and planning goes on.
    late = r.send(answer(r.log[0], found(FACT), actor="memory", now=r.clock))
    assert late.events == () and "not an open request" in (late.dropped or "")
    r.reply("MemoryRetrieved", plan(("search_docs", {"query": "code"})), actor="planner")
    assert "PlanGenerated" in r.types()
    assert fold(r.log) == r.state


def test_a_store_that_does_not_answer_in_time_lets_the_run_complete() -> None:
    r = memory_run()
    r.reply("RunStarted", found(), actor="memory")
    r.reply("MemoryRetrieved", PlanRejected(errors=["no"], raw_output="", model_call=CALL), actor="planner")
    # A run that fails leaves no memory: it does not wait for the store.
    assert r.types()[-2:] == ["ResponseFinalized", "RunFailed"]

    r = memory_run()
    r.reply("RunStarted", found(), actor="memory")
    r.reply("MemoryRetrieved", plan(("search_docs", {"query": "code"})), actor="planner")
    r.reply("ToolProposed", decide_call(r.last("ToolProposed"), policy=TODAY.policy, now=r.clock,
                                        approval_ttl=timedelta(days=1)).payload, actor="policy_guard")
    r.reply("ToolApproved", executed("search_docs", {"hits": []}))
    r.reply("ResponseRequested", ResponseDrafted(text="done", model_call=CALL), actor="responder")
    r.reply("ResponseDrafted", ResponseFinalized(text="done"), actor="responder")
    assert r.fire_timers(CONFIG.memory_timeout_s) == ["StepTimedOut"]
    assert r.types()[-3:] == ["StepTimedOut", "MemoryStored", "RunCompleted"]
    assert r.log[-2].payload.status == "timeout" and r.log[-2].actor == "orchestrator"


def test_a_run_without_memory_has_no_memory_step() -> None:
    r = Run()
    r.request()
    assert not r.state.memory
    wrong = r.reply("RunStarted", found(FACT), actor="memory")
    assert wrong.events == () and wrong.invalid  # memory does not answer a run that has none
    assert OrchestratorConfig().attempt_timeout(r.state.open_requests[r.log[0].event_id]) == 30.0
    r.reply("RunStarted", PlanRejected(errors=["no"], raw_output="", model_call=CALL), actor="planner")
    assert r.types() == ["RunStarted", "PlanRejected", "ResponseFinalized", "RunFailed"]
    assert r.last("ResponseFinalized").payload.text.count("From memory") == 0


def test_a_memory_run_survives_its_snapshot() -> None:
    r = memory_run()
    r.reply("RunStarted", found(FACT), actor="memory")
    codec = EventCodec()
    assert from_snapshot(to_snapshot(r.state, codec), codec, run_id=RUN) == r.state


def _recorded_memory_run(*, retrieval_times_out: bool) -> list:
    """A memory run as the stack records it, every worker's answer made by today's worker code."""
    r = memory_run("What is our refund policy for annual plans?")
    if retrieval_times_out:
        r.fire_timers(CONFIG.memory_timeout_s)
    else:
        r.reply("RunStarted", found(FACT).model_copy(update={"text": r.state.text}), actor="memory")
    asked = r.last("MemoryRetrieved")
    r.clock += timedelta(milliseconds=5)
    r.send(plan_with(asked, ScriptedPlanner(), config=TODAY.models, registry=TODAY.registry,
                     now=lambda: r.clock))
    r.send(decide_call(r.last("ToolProposed"), policy=TODAY.policy, now=r.clock,
                       approval_ttl=timedelta(days=1)))
    r.reply("ToolApproved", executed("search_docs", {"hits": []}), actor="tool_executor")
    r.send(draft_response(r.last("ResponseRequested"), now=r.clock))
    sent, _ = final_response(r.last("ResponseDrafted"), request_text=r.state.text, writer=None,
                             config=TODAY.models, now=r.clock)
    r.send(sent)
    r.reply("ResponseFinalized", kept_one(), actor="memory")
    assert r.state.status == "completed"
    return r.log


def test_a_memory_run_replays_exactly_from_its_recorded_memory() -> None:
    for times_out in (False, True):
        log = _recorded_memory_run(retrieval_times_out=times_out)
        assert inbox_record(log[0]).payload.memory is True
        checked = check_run(RecordedRun(RUN, "acme", tuple(log)), processors=TODAY)
        assert checked.divergence is None, checked.divergence
        assert checked.status == "completed"
    # A different recorded memory is fed back as it was, not read again: still no divergence;
    # but an answer that the recorded memories changed is caught where it differs.
    log = _recorded_memory_run(retrieval_times_out=False)
    i = next(i for i, e in enumerate(log) if e.event_type == "ResponseDrafted")
    drifted = log[i].model_copy(update={"payload": log[i].payload.model_copy(update={"text": "other"})})
    found = check_run(RecordedRun(RUN, "acme", (*log[:i], drifted, *log[i + 1:])), processors=TODAY)
    assert found.divergence is not None and found.divergence.seq == drifted.seq


def test_the_memory_processor_answers_with_what_the_store_found_or_kept() -> None:
    started = RunStarted(text="what is our project code?", route="support", idempotency_key="k1", memory=True)
    records = [MemoryRecord(tenant_id="acme", memory_id=f"m{i}", text=f"fact {i}", subject="",
                            created_at=T0, expires_at=T0 + timedelta(days=1)) for i in range(9)]
    given = retrieved(started, [(r, 1.0 - i / 10) for i, r in enumerate(records)])
    assert (given.status, given.text, given.route) == ("ok", started.text, "support")
    assert [m.memory_id for m in given.memories] == [f"m{i}" for i in range(RETRIEVED_K)]
    missed = not_retrieved(started, "down")
    assert (missed.status, missed.memories, missed.reason) == ("unavailable", [], "down")
    assert [m.memory_id for m in stored(records[:2]).memories] == ["m0", "m1"]
    kept = memories_of_finished(run_id="r1", request="Remember that the audit is in March",
                                answer="Noted.", outcome="succeeded", subject="ana")
    assert [(i.text, i.subject) for i in kept] == [
        ("the audit is in March", "ana"),
        ("Asked: Remember that the audit is in March\nAnswered: Noted.", "ana")]
    assert memories_of_finished(run_id="r1", request="x", answer="y", outcome="refused") == []


def test_counterfactual_replay_reuses_the_recorded_memory() -> None:
    for times_out in (False, True):
        log = _recorded_memory_run(retrieval_times_out=times_out)
        sim = simulate(RecordedRun(RUN, "acme", tuple(log)),
                       candidate=Candidate(name="today", processors=TODAY), baseline=TODAY)
        assert sim.stopped is None
        assert [e.event_type for e in sim.log] == [e.event_type for e in log]
        assert [e.payload for e in sim.log if e.event_type.startswith("Memory")] == \
            [e.payload for e in log if e.event_type.startswith("Memory")]
