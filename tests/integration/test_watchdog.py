"""Processes heal: the watchdog restarts a service that died, and one that is alive but stalled
(its main loop silent), with backoff; `agentlog status` tells alive from working; under
systemd the heartbeat is the watchdog ping."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator

import pytest

from streams.service import ServiceContext
from streams.settings import Settings
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("watchdog-home"), AGENTLOG_STALL_S="6") as s:
        yield s


def _service(stack: Stack, name: str) -> dict:
    return stack.cli_json("status")["services"][name]


def test_a_killed_service_is_started_again_without_anyone_running_up(stack: Stack):
    before = _service(stack, "orchestrator")
    os.kill(before["pid"], signal.SIGKILL)
    after = eventually(
        lambda: (s := _service(stack, "orchestrator"))["alive"] and s["pid"] != before["pid"] and s,
        timeout=30, what="the watchdog to start the orchestrator again")
    assert after["restarts"] >= 1
    assert stack.cli_json("submit", "What is our refund policy?", "--wait")["status"] == "completed"


def test_a_stalled_service_is_stopped_and_started_again(stack: Stack):
    before = _service(stack, "planner")
    os.kill(before["pid"], signal.SIGSTOP)  # alive, but its main loop does not run
    try:
        eventually(lambda: (s := _service(stack, "planner"))["pid"] != before["pid"] and s["alive"],
                   timeout=60, what="the watchdog to replace the stalled planner")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(before["pid"], signal.SIGCONT)
    reasons = json.loads(stack.settings.path("run", "watchdog.json").read_text())
    assert reasons["planner"]["last_reason"].startswith("stalled: main loop silent for")
    assert stack.cli_json("submit", "How many orders are pending?", "--wait")["status"] == "completed"
    assert stack.cli("health", "planner").returncode == 0
    assert _service(stack, "planner")["state"] in ("idle", "working")


@pytest.fixture
def own_signal_handlers() -> Iterator[None]:
    """A ServiceContext takes SIGTERM and SIGINT for its service: give them back to pytest."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("own_signal_handlers")
def test_the_heartbeat_tells_systemd_ready_and_alive(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        ctx = ServiceContext("planner", Settings(home=tmp_path))
        ctx.mark_ready()
        assert [sock.recv(64), sock.recv(64)] == [b"READY=1", b"WATCHDOG=1"]
        ctx.progress_at -= 1000  # no progress for long, and not waiting for Kafka: no ping
        ctx.beat(force=True)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        ctx.waiting("kafka", "the broker is away")  # a restart would not help: still alive
        ctx.beat(force=True)
        assert sock.recv(64) == b"WATCHDOG=1"
        ctx.close()
