"""Several orchestrators share the inbox partitions as one consumer group; when one dies, the
others take its partitions over, rebuild its runs from the log and carry them on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streams.settings import REPO_ROOT
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def _dense(run: dict) -> bool:
    return [e["seq"] for e in run["events"]] == list(range(1, len(run["events"]) + 1))


def test_a_second_orchestrator_shares_the_work_and_takes_over_when_the_first_dies(stack: Stack):
    log = open(stack.settings.path("logs", "orchestrator-1.log"), "ab")  # noqa: SIM115 - closed in the finally
    second = subprocess.Popen([sys.executable, "-m", "streams.services.orchestrator"], cwd=REPO_ROOT,
                              env={**stack.env, "AGENTLOG_INSTANCE_ID": "1"}, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "live runs from" in stack.settings.path(
            "logs", "orchestrator-1.log").read_text(), what="the second orchestrator to join")
        before = [stack.cli_json("submit", f"How many orders are pending? ({i})", "--wait")
                  for i in range(4)]
        assert all(r["status"] == "completed" for r in before)

        first = stack.cli_json("status")["services"]["orchestrator"]["pid"]
        os.kill(first, signal.SIGKILL)
        started = time.monotonic()
        after = [stack.cli_json("submit", f"Open a ticket: failover check {i}", "--wait", "--timeout", "90")
                 for i in range(3)]
        assert all(r["status"] == "completed" for r in after), after
        took_over = time.monotonic() - started
        for r in before + after:
            run = stack.cli_json("runs", "show", r["run_id"])
            assert _dense(run) and [e["event_type"] for e in run["events"]].count("RunStarted") == 1
        assert took_over < 90
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
        log.close()
        stack.cli("up")  # the supervised orchestrator back, for the tests after this one
