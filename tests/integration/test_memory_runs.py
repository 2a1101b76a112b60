"""Memory in runs on the real stack: an opted-in tenant's run is given its redacted memories before
it plans and its answer uses them, what it leaves is stored before it completes, a tenant that has
not opted in has no memory step, and a memory service that is down never blocks a run."""

from __future__ import annotations

import json
from typing import Any

from tests.stack import Stack, eventually

TENANT = "mem-acme"


def _run(stack: Stack, text: str, tenant: str, *extra: str) -> dict[str, Any]:
    done = stack.cli_json("submit", text, "--tenant", tenant, "--wait", *extra)
    assert done["status"] == "completed", (done, stack.log_tail("memory"), stack.log_tail("orchestrator"))
    shown: dict[str, Any] = stack.cli_json("runs", "show", done["run_id"])
    return shown


def _types(run: dict[str, Any]) -> list[str]:
    return [e["event_type"] for e in run["events"]]


def _one(run: dict[str, Any], kind: str) -> dict[str, Any]:
    (event,) = [e for e in run["events"] if e["event_type"] == kind]
    return event


def test_memory_runs_on_the_stack(stack: Stack, tmp_path) -> None:
    stack.cli("memory", "opt-in", "--tenant", TENANT)
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps({"id": "code", "text": "Our project code is ZEBRA-42, ask jane.doe@acme.com"})
                     + "\n")
    stack.cli("memory", "import", "--tenant", TENANT, str(facts))

    run = _run(stack, "What is our project code?", TENANT)
    kinds = _types(run)
    assert run["events"][0]["payload"]["memory"] is True
    assert kinds.index("MemoryRetrieved") < kinds.index("PlanGenerated")
    retrieved = _one(run, "MemoryRetrieved")
    assert retrieved["actor"] == "memory" and retrieved["payload"]["status"] == "ok"
    given = retrieved["payload"]["memories"]
    assert given[0]["memory_id"] == "code"
    assert given[0]["text"] == "Our project code is ZEBRA-42, ask <EMAIL_ADDRESS>"  # redacted when stored
    assert "ZEBRA-42" in run["answer"] and "jane.doe" not in run["answer"]
    (step,) = _one(run, "PlanGenerated")["payload"]["steps"]
    assert "remembered fact code" in step["objective"]  # the planner answered from the memory
    assert kinds[-2:] == ["MemoryStored", "RunCompleted"]
    kept = _one(run, "MemoryStored")["payload"]
    assert kept["status"] == "ok" and any("What is our project code?" in m["text"] for m in kept["memories"])
    assert "jane.doe" not in json.dumps(kept)

    plain = _run(stack, "What is our project code?", "mem-plain")
    assert plain["events"][0]["payload"]["memory"] is False
    assert not {"MemoryRetrieved", "MemoryStored"} & set(_types(plain))
    assert "ZEBRA-42" not in plain["answer"]

    stack.stop("memory")
    try:
        down = _run(stack, "What is our project code?", TENANT, "--memory")
        gave_up = _one(down, "MemoryRetrieved")
        assert (gave_up["actor"], gave_up["payload"]["status"]) == ("orchestrator", "timeout")
        assert _types(down)[-3:] == ["StepTimedOut", "MemoryStored", "RunCompleted"]
        assert _one(down, "MemoryStored")["payload"]["status"] == "timeout"
        assert "ZEBRA-42" not in down["answer"]
    finally:
        stack.cli("up")
    # Back up, the service catches up on the run it missed but answers it no more: the log says
    # nothing was stored, and so does the store.
    eventually(lambda: "memory time limit: not answered" in stack.log_tail("memory", 200),
               what="the memory service to pass over the run it missed")
    kept_by_runs = [m for m in stack.cli_json("memory", "list", "--tenant", TENANT) if m["source"] == "run"]
    assert [m["id"] for m in kept_by_runs] == [m["memory_id"] for m in kept["memories"]]
