"""The web console in a real browser (Debian's chromium, driven headless by Playwright) against
the session's stack: sign in, the runs list, a timeline that follows a run live, approving and
rejecting parked calls from the queue, the charts, and another tenant who sees none of it.

Each page's screenshot goes to the directory `AGENTLOG_CONSOLE_SHOTS` names (default: the
test's temporary directory), to look at."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_api
import pytest

from schemas.alert_codec import AlertCodec
from schemas.alerts import Alert, AlertRaised
from streams.kafka import producer
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():  # a failure, not a skip: `make test` installs it
    raise RuntimeError(f"no {CHROMIUM}: run `sh infra/debian-packages.sh chromium`")

expect = playwright_api.expect
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("AGENTLOG_CONSOLE_SHOTS")
    where = Path(named) if named else tmp_path_factory.mktemp("console-shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.gateway_port}"


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, dict[str, Any]]:
    """A reviewer of tenant `console-a` (every role), and a key of `console-b`."""
    return {name: stack.cli_json("keys", "create", "--tenant", tenant, "--name", name)
            for name, tenant in (("reviewer", "console-a"), ("outsider", "console-b"))}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Console:
    """One browser tab on the console, with every console message and page error it logs."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def sign_in(self, secret: str) -> None:
        self.page.goto(self.base + "/")
        self.page.fill("#key", secret)
        self.page.click("#signin-form button[type=submit]")
        expect(self.page.locator("#identity")).to_be_visible()

    def shot(self, where: Path, name: str) -> None:
        self.page.screenshot(path=where / f"{name}.png", full_page=True)

    def assert_no_errors(self, *expected_statuses: int) -> None:
        """Nothing logged but the failed loads of the HTTP statuses a step provoked on purpose
        (the browser logs each refused request; the page shows it as a message)."""
        allowed = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")
        unexpected = [e for e in self.errors
                      if not ((m := allowed.search(e)) and int(m[1]) in expected_statuses)]
        assert not unexpected, unexpected


@pytest.fixture
def console(browser: Any, base: str) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = Console(context.new_page(), base)
    yield tab
    context.close()


def _submit(http: httpx.Client, text: str) -> str:
    r = http.post("/v1/runs", json={"text": text}, headers={"Idempotency-Key": f"console-{uuid.uuid4()}"})
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


def _status(http: httpx.Client, run_id: str) -> str:
    r = http.get(f"/v1/runs/{run_id}")
    return str(r.json()["status"]) if r.status_code == 200 else "unknown"


def _parked(http: httpx.Client, text: str) -> str:
    run_id = _submit(http, text)
    eventually(lambda: _status(http, run_id) == "awaiting_approval", what=f"run {run_id} to be parked")
    return run_id


@pytest.fixture(scope="module")
def api(stack: Stack, keys: dict[str, dict[str, Any]]) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.gateway_port}", timeout=30,
                        headers={"Authorization": f"Bearer {keys['reviewer']['secret']}"})


@pytest.fixture(scope="module")
def done_runs(api: httpx.Client) -> list[str]:
    """Two runs of `console-a` that completed, the list's first content."""
    runs = [_submit(api, "What are the API rate limits?"),
            _submit(api, "Open an urgent ticket: the console test printer is on fire")]
    for run_id in runs:
        eventually(lambda run_id=run_id: _status(api, run_id) == "completed", what=f"run {run_id}")
    return runs


def test_sign_in_refuses_a_wrong_key_then_lists_the_tenants_runs(
        console: Console, keys: dict[str, dict[str, Any]], done_runs: list[str], shots: Path):
    page = console.page
    page.goto(console.base + "/")
    expect(page.locator("#signin-form")).to_be_visible()
    console.shot(shots, "1-sign-in")
    page.fill("#key", "al_not-a-key")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("refused this key")
    page.fill("#key", keys["reviewer"]["secret"])
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#identity")).to_have_text("reviewer · tenant console-a")
    rows = page.locator("table.runs tbody tr[data-run]")
    for run_id in done_runs:
        expect(page.locator(f"tr[data-run='{run_id}']")).to_contain_text("completed")
    # Newest first: the ticket was submitted after the question.
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert order.index(done_runs[1]) < order.index(done_runs[0])
    ticket = page.locator(f"tr[data-run='{done_runs[1]}']")
    expect(ticket).to_contain_text("Open an urgent ticket")
    expect(ticket.locator("td.num").nth(0)).to_have_text("1")  # one tool call
    expect(ticket.locator("td.num").nth(1)).to_have_text(re.compile(r"^\$0\.\d{4}$"))
    assert keys["reviewer"]["secret"] not in page.url
    assert page.evaluate("sessionStorage.getItem('agentlog.key')") == keys["reviewer"]["secret"]
    # The text filter narrows the list; the keyboard reaches it.
    page.fill("#f-q", "printer is on fire")
    page.keyboard.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run", done_runs[1])
    page.select_option("#f-status", "failed")
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.runs tbody")).to_contain_text("No run matches these filters.")
    page.goto(console.base + "/#/runs")
    expect(rows.first).to_be_visible()
    console.shot(shots, "2-runs")
    page.set_viewport_size({"width": 390, "height": 844})
    console.shot(shots, "2b-runs-narrow")
    console.assert_no_errors(401)


def test_a_timeline_follows_the_run_live_and_an_approval_from_the_queue_completes_it(
        browser: Any, base: str, api: httpx.Client, keys: dict[str, dict[str, Any]], shots: Path):
    run_id = _submit(api, "Send an email to dana@customer.example saying the order shipped")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        timeline, queue = Console(context.new_page(), base), Console(context.new_page(), base)
        timeline.sign_in(keys["reviewer"]["secret"])
        timeline.page.goto(f"{base}/#/run/{run_id}")
        page = timeline.page
        expect(page.locator(".badge").first).to_have_text("waits for a person")
        expect(page.locator(".timeline tbody tr").last).to_contain_text("ApprovalRequested")
        decision = page.locator(".timeline tr", has_text="ApprovalRequested").locator(".decision")
        expect(decision).to_contain_text("rule deny_external_email_without_approval")
        expect(decision).to_contain_text("policy sha256:")
        expect(page.locator("section.plan")).to_contain_text("send_email")
        before = page.locator(".timeline tbody tr").count()
        page.evaluate("window.__sameDocument = true")
        timeline.shot(shots, "3-timeline-waiting")

        queue.sign_in(keys["reviewer"]["secret"])
        queue.page.goto(f"{base}/#/approvals")
        card = queue.page.locator(f"article.card[data-run='{run_id}']")
        expect(card).to_contain_text("deny_external_email_without_approval")
        expect(card).to_contain_text("dana@customer.example")
        expect(card).to_contain_text(re.compile(r"expires in \d+ h"))
        queue.shot(shots, "4-approvals")
        card.locator("textarea").fill("customer asked for it")
        card.locator("button.approve").dblclick()  # the second click finds the button disabled
        expect(card).to_contain_text("Approved: step s1")
        expect(card.locator("button.approve")).to_be_disabled()
        queue.shot(shots, "5-approved")

        # The open timeline takes the rest of the run from its stream, without a reload.
        expect(page.locator(".badge").first).to_have_text("completed")
        expect(page.locator(".timeline tbody tr").last).to_contain_text("RunCompleted")
        assert page.locator(".timeline tbody tr").count() > before + 3
        assert page.evaluate("window.__sameDocument") is True
        expect(page.locator(".live")).to_have_text("ended")
        expect(page.locator(".timeline tr", has_text="ApprovalGranted")).to_contain_text(
            f"by reviewer (key {keys['reviewer']['id']}): customer asked for it")
        answer = page.get_by_role("region", name="Answer")
        expect(answer).to_contain_text("E-mail sent to dana@customer.example")
        timeline.shot(shots, "6-timeline-completed")
        timeline.assert_no_errors()
        queue.assert_no_errors()
    finally:
        context.close()
    events = api.get(f"/v1/runs/{run_id}").json()["events"]
    assert [e["event_type"] for e in events].count("ApprovalGranted") == 1
    assert [e["event_type"] for e in events].count("ToolExecuted") == 1


def test_a_rejection_is_recorded_and_a_call_decided_elsewhere_gets_a_clear_message(
        console: Console, api: httpx.Client, keys: dict[str, dict[str, Any]], shots: Path):
    rejected = _parked(api, "Send an email to erin@customer.example about the refund")
    taken = _parked(api, "Send an email to frank@customer.example about the invoice")
    console.sign_in(keys["reviewer"]["secret"])
    page = console.page
    page.goto(f"{console.base}/#/approvals")
    card = page.locator(f"article.card[data-run='{rejected}']")
    card.locator("textarea").fill("not to that address")
    card.locator("button.reject").click()
    expect(card).to_contain_text("Rejected: step s1")
    # Someone else decides the other call while this page still offers it.
    other = page.locator(f"article.card[data-run='{taken}']")
    expect(other.locator("button.approve")).to_be_enabled()
    r = api.post(f"/v1/runs/{taken}/approve", json={"approver": "someone on the CLI"})
    assert r.status_code == 202
    other.locator("button.approve").click()
    expect(other).to_contain_text("Not sent: the call s1 of run")
    expect(other).to_contain_text("already approved by someone on the CLI")
    console.shot(shots, "7-rejected-and-already-decided")
    console.assert_no_errors(409)
    eventually(lambda: _status(api, rejected) == "completed", what="the rejected run to end")
    events = api.get(f"/v1/runs/{rejected}").json()["events"]
    denied = [e for e in events if e["event_type"] == "ApprovalDenied"]
    assert [(e["payload"]["approver"], e["payload"]["reason"]) for e in denied] == [
        (f"reviewer (key {keys['reviewer']['id']})", "not to that address")]
    eventually(lambda: _status(api, taken) == "completed", what="the other run to end")
    executed = [e for e in api.get(f"/v1/runs/{taken}").json()["events"] if e["event_type"] == "ToolExecuted"]
    assert len(executed) == 1


def _raise_alert(stack: Stack, scope: str, summary: str) -> str:
    """An alert on agentlog.alerts, as the alerting processor raises it (the sink stores it)."""
    now = datetime.now(UTC)
    alert = Alert(alert_id=uuid.uuid4().hex, rule="violation_rate_spike", severity="page", scope=scope,
                  window_start=now.replace(hour=0, minute=0, second=0, microsecond=0), window_end=now, at=now,
                  summary=summary, body=AlertRaised(value=40.0, threshold=15.0, baseline=5.0, runs=25))
    out = producer(stack.settings)
    out.produce(stack.settings.alerts_topic, key=alert.alert_id.encode(), value=AlertCodec().encode(alert))
    assert out.flush(10) == 0
    return alert.alert_id


@pytest.fixture(scope="module")
def alerts(stack: Stack, api: httpx.Client) -> dict[str, str]:
    """A firing alert of tenant `console-a`, and one of a route (which spans tenants)."""
    mine = _raise_alert(stack, "tenant:console-a", "violation rate 40 per 100 runs, 3x over a baseline of 5")
    route = _raise_alert(stack, "route:default", "a route's alert, of every tenant's runs")
    eventually(lambda: any(a["alert_id"] == mine for a in api.get("/v1/alerts").json()), what="the alert")
    eventually(lambda: stack.sql(f"SELECT alert_id FROM alerts WHERE alert_id = '{route}'"),
               what="the route's alert to be stored")
    return {"mine": mine, "route": route}


def test_metrics_are_drawn_as_charts_beside_the_firing_alerts(
        console: Console, keys: dict[str, dict[str, Any]], done_runs: list[str], alerts: dict[str, str],
        shots: Path):
    console.sign_in(keys["reviewer"]["secret"])
    page = console.page
    page.goto(f"{console.base}/#/metrics")
    charts = page.locator("figure.chart")
    expect(charts).to_have_count(5)
    success = charts.filter(has_text="Success rate")
    expect(success.locator("svg rect").first).to_be_visible()
    expect(success.locator(".legend")).to_contain_text("default")
    expect(page.locator("#alerts-title")).to_have_text("Alerts firing (1)")
    expect(page.locator("ul.alerts li")).to_contain_text("violation_rate_spike · tenant:console-a")
    expect(page.locator("ul.alerts li")).to_contain_text("3x over a baseline")
    page.select_option("#m-by", "model")
    expect(page.locator("figure.chart .legend").first).to_contain_text("scripted")
    console.shot(shots, "8-metrics")
    console.assert_no_errors()


def test_another_tenants_key_sees_none_of_it(console: Console, keys: dict[str, dict[str, Any]],
                                             done_runs: list[str], alerts: dict[str, str], shots: Path):
    console.sign_in(keys["outsider"]["secret"])
    page = console.page
    expect(page.locator("#identity")).to_have_text("outsider · tenant console-b")
    expect(page.locator("table.runs tbody")).to_contain_text("No runs yet")
    page.goto(f"{console.base}/#/approvals")
    expect(page.locator(".cards")).to_contain_text("Nothing waits for a person.")
    page.goto(f"{console.base}/#/run/{done_runs[0]}")
    expect(page.locator("main")).to_contain_text(f"This run cannot be shown: no run {done_runs[0]}")
    expect(page.locator(".timeline tbody tr")).to_have_count(0)
    console.shot(shots, "9-other-tenant-run")
    page.goto(f"{console.base}/#/metrics")
    expect(page.locator("figure.chart").first).to_contain_text("No runs started in this range.")
    expect(page.locator("#alerts-title")).to_have_text("Alerts firing (0)")
    console.shot(shots, "9b-other-tenant-metrics")
    console.assert_no_errors(404)


def test_the_page_and_its_files_are_served_with_a_strict_policy_and_no_secret(base: str):
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.findall(r'(?:src|href)="(?![/#])', page.text), "everything comes from the gateway itself"
    files = (("console.js", "text/javascript"), ("console.css", "text/css"), ("icon.svg", "image/svg"))
    for name, kind in files:
        r = httpx.get(f"{base}/console/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    missing = httpx.get(f"{base}/console/api.py")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    # /v1/runs is two routes now (the list and the submission): a 405 names both methods.
    wrong = httpx.delete(f"{base}/v1/runs")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"


def test_the_runs_api_pages_newest_first_filters_and_keeps_to_the_tenant(
        stack: Stack, api: httpx.Client, keys: dict[str, dict[str, Any]], done_runs: list[str],
        alerts: dict[str, str]):
    first = api.get("/v1/runs", params={"limit": 1}).json()
    assert len(first["runs"]) == 1 and first["next"]
    second = api.get("/v1/runs", params={"limit": 1, "before": first["next"]}).json()
    assert second["runs"][0]["run_id"] != first["runs"][0]["run_id"]
    assert second["runs"][0]["started"] <= first["runs"][0]["started"]
    everything = api.get("/v1/runs", params={"limit": 200}).json()
    assert everything["next"] is None
    ids = [r["run_id"] for r in everything["runs"]]
    assert set(done_runs) <= set(ids) and len(ids) == len(set(ids))
    for status in ("completed", "awaiting_approval", "failed"):
        listed = api.get("/v1/runs", params={"status": status, "limit": 200}).json()["runs"]
        assert all(r["status"] == status for r in listed)
    question = next(r for r in everything["runs"] if r["run_id"] == done_runs[0])
    assert question["text"] == "What are the API rate limits?" and question["route"] == "default"
    assert question["tool_calls"] == 1 and question["duration_ms"] > 0 and question["success"] is True
    bad = api.get("/v1/runs", params={"before": "not-a-cursor"})
    assert bad.status_code == 422 and "before:" in bad.json()["error"]["message"]
    outsider = httpx.Client(base_url=str(api.base_url), timeout=30,
                            headers={"Authorization": f"Bearer {keys['outsider']['secret']}"})
    assert outsider.get("/v1/runs").json() == {"runs": [], "next": None}
    assert outsider.get("/v1/runs", params={"q": done_runs[0][:8]}).json()["runs"] == []
    assert api.get("/v1/runs", params={"q": done_runs[0][:8]}).json()["runs"][0]["run_id"] == done_runs[0]
    assert outsider.get("/v1/alerts").json() == []
    seen = {a["alert_id"]: a for a in api.get("/v1/alerts").json()}
    assert alerts["mine"] in seen and alerts["route"] not in seen and seen[alerts["mine"]]["firing"] is True
    assert outsider.get("/v1/whoami").json()["tenant_id"] == "console-b"


def test_a_store_or_gateway_that_does_not_answer_is_a_message_not_a_blank_page(
        console: Console, keys: dict[str, dict[str, Any]], shots: Path):
    console.sign_in(keys["reviewer"]["secret"])
    page = console.page
    down = {"error": {"status": 503, "message": "the analytics store is not reachable: connection refused"}}
    page.route("**/v1/runs?*",
               lambda route: route.fulfill(status=503, json=down, headers={"Retry-After": "5"}))
    page.goto(f"{console.base}/#/runs?q=anything")
    expect(page.locator("main")).to_contain_text(
        "Runs not listed: The event log or the analytics store does not answer: the analytics store is not "
        "reachable: connection refused. Try again shortly.")
    page.route("**/v1/approvals", lambda route: route.abort("connectionrefused"))
    page.goto(f"{console.base}/#/approvals")
    expect(page.locator("main")).to_contain_text(
        "The approval queue cannot be read: The gateway does not answer (is agentlog up?).")
    console.shot(shots, "10-gateway-not-answering")
    assert all("503" in e or "ERR_CONNECTION_REFUSED" in e for e in console.errors), console.errors
