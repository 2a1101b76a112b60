"""The three alert rules fire and resolve on the real stack (Kafka, every service, chDB), and the
webhook takes each alert once although its first delivery failed.

The rules file of this module has the defaults' conditions on short windows (15 s), so a day
over day or a seven-day baseline takes seconds: ordinary runs fill the baseline windows, then one
window gets a burst of denied calls (page), one window's runs cost more per success (warn), and a
candidate fails its replay gate (block); each resolves when things are ordinary again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.alerts import Alert, AlertRaised
from streams.webhook import Delivery, deliver
from tests.free_ports import free_ports
from tests.stack import Stack, eventually, running_stack

pytestmark = pytest.mark.integration

WINDOW_S = 15
RULES = f"""
version: 1
rules:
  - {{name: violations, kind: violation_rate, scopes: [tenant], window: {WINDOW_S}s,
     baseline: {3 * WINDOW_S}s, factor: 3, min_runs: 4, min_baseline_runs: 6}}
  - {{name: cost, kind: cost_per_success, scopes: [tenant], window: {WINDOW_S}s, rise: 0.3, min_runs: 3}}
  - {{name: gate, kind: replay_gate}}
"""
DOCS = "What is our refund policy for annual plans?"  # search_docs: $0.0005 a run
SQL = "How many customers do we have in Germany?"  # query_sql: $0.001 a run
DENIED = "Drop the orders table."  # deny_destructive_sql
T = datetime(2026, 12, 1, tzinfo=UTC)


class Receiver:
    """A webhook receiver that refuses its very first request (HTTP 500) and takes each
    Idempotency-Key once, as a receiver honouring the key does."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.taken: dict[str, dict[str, Any]] = {}
        self.repeats: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                key = self.headers.get("Idempotency-Key") or ""
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                first = not receiver.attempts
                receiver.attempts.append(key)
                if first:
                    self.send_response(500)
                elif key in receiver.taken:
                    receiver.repeats[key] += 1
                    self.send_response(200)
                else:
                    receiver.taken[key] = body
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/alerts"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("agentlog-alerts")
    rules = home / "alerts.yaml"
    rules.write_text(RULES)
    with running_stack(home, AGENTLOG_ALERT_RULES_FILE=str(rules), AGENTLOG_ALERT_WEBHOOK_URL=receiver.url,
                       AGENTLOG_ALERT_WEBHOOK_BACKOFF_S="0.2") as s:
        yield s


def _window() -> int:
    return int(time.time() // WINDOW_S)


def _next_window() -> int:
    """Sleep into the start of the next window (plus a little, so a run's start falls inside it)."""
    now = time.time()
    time.sleep(WINDOW_S - now % WINDOW_S + 0.3)
    return _window()


def _alerts(stack: Stack) -> list[dict[str, Any]]:
    return stack.cli_json("alerts", "list")


def _alert(stack: Stack, rule: str, scope: str, *, firing: bool) -> dict[str, Any] | None:
    return next((a for a in _alerts(stack) if a["rule"] == rule and a["scope"] == scope
                 and a["firing"] is firing), None)


def _scores(path: Path, quality: float) -> str:
    quality_doc = {"candidate": quality, "baseline": 0.9, "runs": 4, "scorers": {}}
    path.write_text(json.dumps({"format": "agentlog.scores/1", "candidate": "prompt-v2", "runs": 4,
                                "quality": quality_doc}))
    return str(path)


def test_the_three_rules_fire_and_resolve_and_the_webhook_takes_each_alert_once(
        alert_stack: Stack, receiver: Receiver, tmp_path: Path):
    stack = alert_stack
    burst, costly = stack.client("burst"), stack.client("costly")
    posted: list[str] = []

    def post(http: Any, text: str, n: int) -> None:
        for _ in range(n):
            answer = http.post("/v1/runs", json={"text": text})
            assert answer.status_code == 202, answer.text
            posted.append(answer.json()["run_id"])

    # Baseline: three windows of ordinary runs, one denied call in six (16.7 per 100 runs), and
    # runs that cost $0.0005 per success.
    _next_window()
    for _ in range(3):
        post(burst, DOCS, 5)
        post(burst, DENIED, 1)
        post(costly, DOCS, 4)
        _next_window()
    assert stack.cli("alerts", "check").returncode == 0

    # One window: a burst of denied calls in one tenant; another tenant's runs cost twice as much.
    window = _window()
    post(burst, DENIED, 6)
    post(costly, SQL, 4)
    page = eventually(lambda: _alert(stack, "violations", "tenant:burst", firing=True), timeout=WINDOW_S,
                      what="the page on tenant burst")
    assert page["severity"] == "page" and page["value"] > page["threshold"] and page["baseline"] < 20
    warn = eventually(lambda: _alert(stack, "cost", "tenant:costly", firing=True), timeout=WINDOW_S,
                      what="the cost warning on tenant costly")
    assert warn["severity"] == "warn" and warn["value"] == pytest.approx(2 * warn["baseline"])
    check = stack.cli("alerts", "check", "--json", check=False)
    assert check.returncode == 1
    verdict = json.loads(check.stdout)
    assert [a["alert_id"] for a in verdict["failing"]] == [page["alert_id"]]
    assert [a["alert_id"] for a in verdict["warnings"]] == [warn["alert_id"]]

    # The next window is ordinary again: the page and the warning (day over day) resolve.
    assert _next_window() == window + 1, "the alerts took longer than a window to show"
    post(burst, DOCS, 6)
    post(costly, DOCS, 4)
    eventually(lambda: _alert(stack, "violations", "tenant:burst", firing=False), timeout=40,
               what="the page to resolve")
    eventually(lambda: _alert(stack, "cost", "tenant:costly", firing=False), timeout=40,
               what="the warning to resolve")
    assert stack.cli("alerts", "check").returncode == 0

    # A candidate fails its replay gate: block; it passes again: resolved.
    failed = stack.cli("gate", _scores(tmp_path / "bad.json", 0.5), "--min-quality", "0.8", check=False)
    assert failed.returncode == 1 and "not recorded" not in failed.stderr
    block = eventually(lambda: _alert(stack, "gate", "candidate:prompt-v2", firing=True), timeout=40,
                       what="the block on the failed gate")
    assert block["severity"] == "block" and "quality" in block["summary"]
    assert stack.cli("alerts", "check", check=False).returncode == 1
    # The processor restarts meanwhile: what fires is restored from its changelog topics.
    stack.stop("alerting")
    stack.cli("up")
    stack.cli("gate", _scores(tmp_path / "good.json", 0.95), "--min-quality", "0.8")
    resolved = eventually(lambda: _alert(stack, "gate", "candidate:prompt-v2", firing=False), timeout=60,
                          what="the block to resolve")
    assert resolved["alert_id"] == block["alert_id"]
    assert stack.cli("alerts", "check").returncode == 0

    # Every alert raised and resolved reached the webhook, once, under its own key; the first
    # attempt was refused and retried with the same key.
    stored = _alerts(stack)
    assert {a["rule"] for a in stored} == {"violations", "cost", "gate"}
    wanted = {f"{a['alert_id']}:{kind}" for a in stored for kind in ("raised", "resolved")}
    eventually(lambda: wanted <= set(receiver.taken), timeout=40, what="every alert at the webhook")
    assert set(receiver.taken) == wanted
    assert receiver.attempts[0] == receiver.attempts[1], "the failed first delivery was retried"
    assert receiver.taken[f"{page['alert_id']}:raised"]["severity"] == "page"
    # The sink stored each record once.
    rows = stack.sql("SELECT alert_id, kind, count() AS n FROM alerts GROUP BY alert_id, kind")
    assert len(rows) == len(wanted) and all(r["n"] == 1 for r in rows)


def test_a_delivery_gives_up_on_a_refusal_at_once_and_on_failures_after_its_attempts():
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(answers.pop(0) if answers else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    alert = Alert(alert_id="a" * 32, rule="r", severity="page", scope="tenant:t", window_start=T,
                  window_end=T, at=T, summary="s", body=AlertRaised(value=1, threshold=1, baseline=1, runs=1))
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    async def go(attempts: int, target: str = url) -> Delivery:
        async with httpx.AsyncClient(timeout=2) as client:
            return await deliver(client, target, alert, attempts=attempts, backoff_s=0.5, sleep=no_wait)

    try:
        answers[:] = [400]
        assert asyncio.run(go(5)) == Delivery(False, 1, "HTTP 400: refused")
        answers[:] = [503, 429, 204]
        assert asyncio.run(go(5)) == Delivery(True, 3)
        assert waits == [0.5, 1.0]
        answers[:] = []
        assert asyncio.run(go(3)) == Delivery(False, 3, "HTTP 503")
        refused = asyncio.run(go(2, f"http://127.0.0.1:{free_ports(1)[0]}/"))
        assert not refused.delivered and refused.attempts == 2 and "ConnectError" in refused.last_error
    finally:
        server.shutdown()


def test_the_alerting_service_is_watched_like_the_others(alert_stack: Stack):
    info = alert_stack.cli_json("status")["services"]["alerting"]
    assert info["alive"] and info["state"] in ("idle", "working")
