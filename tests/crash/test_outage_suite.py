"""The outage suite: the broker of a real single-node stack goes away under load, and the runtime
must come through by itself.

Three outages, each on a fresh stack while three clients submit runs over HTTP (each with an
Idempotency-Key) and a fourth approves the parked calls:
- the broker stopped (SIGTERM) for 20 s, then started again by `agentlog up`;
- the same for 60 s;
- the broker paused (SIGSTOP) for 20 s, then resumed (SIGCONT); nothing is restarted.

Afterwards every accepted run ends; nothing is duplicated (seq dense from 1, one terminal event,
one ticket or e-mail per approved call, ClickHouse holds each event once); no process is left
hung: `agentlog status` reports every process alive, and a fresh run submitted after the outage
completes within 60 s with its events in ClickHouse. A failure names the runs that did not end
with their last events, the process they wait for, and the dead or blamed processes with the
end of their logs. The counts are printed as the crash suite prints them.

Run it alone with `pytest -m crash tests/crash/test_outage_suite.py` (-k 60s for one outage).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.crash.chaos import (
    Chaos,
    approve,
    check_outcome,
    health,
    print_report,
    retrying,
    submit,
    wait_for_runs,
    waiting_for,
)
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.crash, pytest.mark.timeout(900)]

SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", str(int(time.time()))))
LOAD_S = 8.0
"""Seconds of load before the outage, and again after it ends, before the clients stop."""
PROBE_S = 60.0
"""A run submitted after the outage must complete within this."""


@dataclass(frozen=True)
class Outage:
    how: str
    """`stop`: SIGTERM, then `agentlog up` once the time is over; `pause`: SIGSTOP, then SIGCONT."""
    seconds: float


def _broker_pid(stack: Stack) -> int:
    kafka = stack.cli_json("status")["kafka"]
    assert kafka["alive"], kafka
    return int(kafka["pid"])


def _stop(stack: Stack, seconds: float) -> str:
    pid = _broker_pid(stack)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    eventually(lambda: not stack.cli_json("status")["kafka"]["alive"], timeout=60, what="the broker to stop")
    exited = time.monotonic() - t0
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    t1 = time.monotonic()
    up = stack.cli("up", timeout=300, check=False)
    assert up.returncode == 0, (f"`agentlog up` after the outage exited {up.returncode}:\n{up.stdout}\n"
                                f"{up.stderr}\n{health(stack)}")
    return (f"broker SIGTERMed (exited after {exited:.1f} s), started again by `agentlog up` after "
            f"{t1 - t0:.0f} s (up took {time.monotonic() - t1:.0f} s)")


def _pause(stack: Stack, seconds: float) -> str:
    pid = _broker_pid(stack)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"broker SIGSTOPped for {seconds:.0f} s, then SIGCONT"


OUTAGES: dict[str, Callable[[Stack, float], str]] = {"stop": _stop, "pause": _pause}


@pytest.mark.parametrize("outage", [
    pytest.param(Outage("stop", 20), id="broker-stopped-20s"),
    pytest.param(Outage("stop", 60), id="broker-stopped-60s"),
    pytest.param(Outage("pause", 20), id="broker-paused-20s"),
])
def test_runs_survive_a_broker_outage(outage: Outage, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with running_stack(tmp_path / "home") as stack:
        _under_load(stack, outage, capsys)


def _under_load(stack: Stack, outage: Outage, capsys: pytest.CaptureFixture[str]) -> None:
    label = f"outage {outage.how} {outage.seconds:.0f} s, seed {SEED}"
    chaos = Chaos(patience_s=outage.seconds + 90)
    client = stack.client("default")
    client.timeout = httpx.Timeout(30)
    stop_load = threading.Event()
    prefix = f"outage-{outage.how}-{outage.seconds:.0f}-{SEED}"
    submitters = [threading.Thread(target=submit, args=(client, chaos, prefix, itertools.count(k, 3)),
                                   kwargs={"until": stop_load, "pause_s": 0.5}) for k in range(3)]
    approver = threading.Thread(target=approve, args=(client, chaos))
    pids = _pids(stack)
    started = time.monotonic()
    for t in (*submitters, approver):
        t.start()
    try:
        time.sleep(LOAD_S)
        before = len(chaos.runs)
        what = OUTAGES[outage.how](stack, outage.seconds)
        during = len(chaos.runs) - before
        time.sleep(LOAD_S)
    finally:
        stop_load.set()
        for t in submitters:
            t.join()
    after = len(chaos.runs) - before - during

    # A fresh run after the outage: every worker must take part, and the sink store it.
    probe_sent = datetime.now(UTC)
    probe = retrying(chaos, lambda: client.post(
        "/v1/runs", json={"text": f"Open a ticket about outage probe {SEED}, then email ops@yourcompany.com "
                                  "the refund policy"}, headers={"Idempotency-Key": f"{prefix}-probe"}))
    assert probe.status_code == 202, (label, probe.text, health(stack, ["gateway"]))
    probe_id = probe.json()["run_id"]
    run_ids = set(chaos.runs.values())
    try:
        by_run = wait_for_runs(stack, chaos, run_ids | {probe_id}, label=f"{label} ({what})",
                               timeout_s=180, stall_s=60)
    finally:
        chaos.done.set()
        approver.join()
    assert not chaos.errors, (label, chaos.errors)
    timeline = by_run[probe_id]
    probe_s = (timeline[-1].event_time - probe_sent).total_seconds()
    assert timeline[-1].event_type == "RunCompleted" and probe_s <= PROBE_S, (
        f"{label}: the run submitted after the outage ended with {timeline[-1].event_type} after "
        f"{probe_s:.0f} s: {[e.event_type for e in timeline]}\n"
        f"{health(stack, [waiting_for(timeline[:-1]).split()[0]])}")

    outcome = check_outcome(stack, by_run, run_ids | {probe_id}, label=label, store_timeout_s=60)
    status = stack.cli_json("status")
    dead = [n for n, s in status["services"].items() if not s["alive"]] + \
        ([] if status["kafka"]["alive"] else ["kafka"])
    assert not dead, f"{label}: dead after the outage: {dead}\n{health(stack)}"
    restarted = sorted(n for n, pid in _pids(stack).items() if pid != pids.get(n))
    print_report(capsys, f"outage suite, {label}: took {time.monotonic() - started:.0f} s; {what}", chaos,
                 outcome, f"runs accepted: {before} before, {during} during, {after} after the outage; "
                          f"a fresh run after it completed in {probe_s:.1f} s",
                 f"processes with a new pid since the start (died and were started again): "
                 f"{restarted or 'none'}")
    assert set(outcome.statuses) == {"RunCompleted"}, outcome.statuses


def _pids(stack: Stack) -> dict[str, int | None]:
    st = stack.cli_json("status")
    return {"kafka": st["kafka"]["pid"], **{n: s["pid"] for n, s in st["services"].items()}}
