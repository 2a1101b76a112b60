"""What users build around the log: consumers of RunCompleted, `agentlog tail`, cancellation."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import pytest

from streams.settings import REPO_ROOT
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def _lines_until(argv: list[str], needle: str, *, timeout_s: float = 30) -> list[str]:
    """Run a follower until it prints `needle` (killed after `timeout_s` either way)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    killer = threading.Timer(timeout_s, proc.kill)
    killer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                break
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()
    return lines


def test_the_readme_consumer_reacts_to_run_completed(stack: Stack):
    done = stack.cli_json("submit", "How many products do we sell?", "--wait", "--tenant", "billing")
    lines = _lines_until([sys.executable, str(REPO_ROOT / "infra/examples/on_run_completed.py"),
                          "--bootstrap", stack.settings.bootstrap_servers, "--group", f"ex-{uuid.uuid4()}"],
                         done["run_id"])
    mine = [json.loads(line) for line in lines if done["run_id"] in line]
    assert len(mine) == 1
    assert mine[0]["tenant_id"] == "billing" and mine[0]["outcome"] == "succeeded"


def test_tail_filters_by_type_and_tenant(stack: Stack):
    done = stack.cli_json("submit", "What are the API rate limits?", "--wait", "--tenant", "tail-test")
    out = stack.cli("tail", "--type", "RunCompleted", "--tenant", "tail-test", "--from-beginning",
                    "--max", "1", "--json", "--group", f"tail-{uuid.uuid4()}", timeout=60)
    (line,) = out.stdout.splitlines()
    event = json.loads(line)
    assert event["run_id"] == done["run_id"] and event["event_type"] == "RunCompleted"
    assert event["tenant_id"] == "tail-test" and event["payload"]["outcome"] == "succeeded"


def test_a_cancelled_run_stops_and_its_parked_call_can_no_longer_be_approved(stack: Stack):
    parked = stack.cli_json("submit", "Email the draft to reviewer@outside.example", "--wait")
    assert parked["status"] == "awaiting_approval"
    stack.cli("runs", "cancel", parked["run_id"], "--reason", "wrong recipient", "--by", "ana")
    run = eventually(
        lambda: (r := stack.cli_json("runs", "show", parked["run_id"]))["status"] == "cancelled" and r,
        what="the cancellation")
    last = run["events"][-1]
    assert last["event_type"] == "RunCancelled" and last["payload"]["reason"] == "wrong recipient"
    assert last["actor"] == "user:ana"
    late = stack.cli("approvals", "approve", parked["run_id"], check=False)
    assert late.returncode == 1 and "cancelled" in late.stderr
    again = stack.cli("runs", "cancel", parked["run_id"], check=False)
    assert again.returncode == 1 and "already ended" in again.stderr


def test_cancel_over_http(stack: Stack):
    http = stack.client()  # the CLI submits as the default tenant
    parked = stack.cli_json("submit", "Send an email to press@news.example about our launch", "--wait")
    r = http.post(f"/v1/runs/{parked['run_id']}/cancel", json={"reason": "embargo", "requested_by": "pr"})
    assert r.status_code == 202
    eventually(lambda: http.get(f"/v1/runs/{parked['run_id']}").json()["status"] == "cancelled",
               what="the HTTP cancellation")
    assert http.post(f"/v1/runs/{parked['run_id']}/cancel", json={}).status_code == 409
    assert http.post(f"/v1/runs/{uuid.uuid4()}/cancel", json={}).status_code == 404
