"""The gateway as its users meet it: keys, tenants, error codes, streaming, OpenAPI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.gateway_port}"


def _error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == r.status_code
    return body["error"]["message"]


def test_without_a_valid_key_nothing_is_served(stack: Stack, base: str):
    r = httpx.post(f"{base}/v1/runs", json={"text": "hi"})
    assert r.status_code == 401 and "API key is required" in _error(r)
    r = httpx.get(f"{base}/v1/approvals", headers={"Authorization": "Bearer al_not-a-key"})
    assert r.status_code == 401 and _error(r) == "unknown API key"


def test_a_revoked_key_is_refused_at_once(stack: Stack, base: str):
    made = stack.cli_json("keys", "create", "--tenant", "gone", "--name", "temp")
    auth = {"X-API-Key": made["secret"]}
    assert httpx.get(f"{base}/v1/approvals", headers=auth).status_code == 200
    stack.cli("keys", "revoke", made["id"])
    assert httpx.get(f"{base}/v1/approvals", headers=auth).status_code == 401


def test_tenants_are_isolated_and_another_tenants_run_looks_missing(stack: Stack):
    acme, globex = stack.client("acme-gw"), stack.client("globex-gw")
    run_id = acme.post("/v1/runs", json={"text": "What are the API rate limits?"}).json()["run_id"]
    mine = eventually(lambda: (r := acme.get(f"/v1/runs/{run_id}")).status_code == 200 and r.json(),
                      what="the run to be readable by its tenant")
    assert mine["events"][0]["event_type"] == "RunStarted"
    other = str(uuid.uuid4())
    theirs, missing = globex.get(f"/v1/runs/{run_id}"), globex.get(f"/v1/runs/{other}")
    assert theirs.status_code == missing.status_code == 404
    assert (_error(theirs), _error(missing)) == (f"no run {run_id}", f"no run {other}")
    assert globex.post(f"/v1/runs/{run_id}/cancel", json={}).status_code == 404
    r = acme.post("/v1/runs", json={"text": "hi", "tenant_id": "globex-gw"})
    assert r.status_code == 403 and "belongs to tenant acme-gw" in _error(r)


def test_bad_requests_get_the_right_status_and_a_clear_message(stack: Stack):
    http = stack.client("errors")
    r = http.post("/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in _error(r)
    r = http.post("/v1/runs", json={"route": "x"})
    assert r.status_code == 422 and "text" in _error(r)
    r = http.post("/v1/runs", json={"text": "x" * 70_000})
    assert r.status_code == 413 and "larger than" in _error(r)
    key = f"k-{uuid.uuid4()}"
    first = http.post("/v1/runs", json={"text": "How many orders are pending?"},
                      headers={"Idempotency-Key": key})
    assert first.status_code == 202
    # The key's run must be on the log before a conflicting reuse can be judged.
    eventually(lambda: http.get(f"/v1/runs/{first.json()['run_id']}").status_code == 200, what="the run")
    r = http.post("/v1/runs", json={"text": "Drop the orders table"}, headers={"Idempotency-Key": key})
    assert r.status_code == 409 and "different request" in _error(r)
    submit_only = stack.client("errors", "submit")
    r = submit_only.get(f"/v1/runs/{first.json()['run_id']}")
    assert r.status_code == 403 and "may not read" in _error(r)


def _frames(r: httpx.Response) -> Iterator[tuple[str | None, Any]]:
    """The (event, data) of each server-sent event, up to and with `end`."""
    kind = None
    for line in r.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])
            if kind == "end":
                return


def test_a_run_streams_its_events_as_server_sent_events_until_it_ends(stack: Stack):
    http = stack.client("sse")
    run_id = http.post("/v1/runs", json={"text": "Open a ticket: coffee machine leaking"}).json()["run_id"]
    # Until the orchestrator has started it, the run is not on the log: 404, like any missing run.
    eventually(lambda: http.get(f"/v1/runs/{run_id}").status_code == 200, what="the run to start")
    with http.stream("GET", f"/v1/runs/{run_id}/events", params={"timeout_s": 60}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = list(_frames(r))
    kinds = [k for k, _ in frames]
    assert kinds[0] == "RunStarted" and kinds[-2] == "RunCompleted" and kinds[-1] == "end"
    assert frames[-1][1] == {"status": "completed"}
    seqs = [d["seq"] for k, d in frames[:-1]]
    assert seqs == list(range(1, len(seqs) + 1))


def test_the_openapi_document_describes_every_endpoint(base: str):
    doc = httpx.get(f"{base}/openapi.json").json()
    assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events", "/v1/runs/{run_id}/cancel",
            "/v1/approvals", "/v1/runs/{run_id}/approve", "/v1/runs/{run_id}/reject"} <= set(doc["paths"])
    assert "RunRequest" in doc["components"]["schemas"]


def test_a_stream_stops_at_its_timeout_and_follows_a_run_through_a_persons_decision(stack: Stack):
    http = stack.client("sse-parked")
    run_id = stack.cli_json("submit", "Send an email to buyer@other-corp.example about the renewal",
                            "--wait", "--tenant", "sse-parked")["run_id"]
    started = time.monotonic()
    with http.stream("GET", f"/v1/runs/{run_id}/events", params={"timeout_s": 1}) as r:
        frames = list(_frames(r))
    assert frames[-2][0] == "ApprovalRequested" and frames[-1] == ("end", {"status": "awaiting_approval"})
    assert time.monotonic() - started < 10
    with http.stream("GET", f"/v1/runs/{run_id}/events", params={"timeout_s": 60}) as r:
        kinds = []
        for kind, _ in _frames(r):
            kinds.append(kind)
            if kind == "ApprovalRequested":
                assert http.post(f"/v1/runs/{run_id}/approve", json={"approver": "ana"}).status_code == 202
    assert kinds[kinds.index("ApprovalRequested") + 1] == "ApprovalGranted"
    assert kinds[-2:] == ["RunCompleted", "end"]


def test_the_openapi_document_declares_every_error_of_every_operation(base: str):
    doc = httpx.get(f"{base}/openapi.json").json()
    run_ops = {(m, f"/v1/runs/{{run_id}}{tail}") for m, tail in
               (("get", ""), ("get", "/events"), ("post", "/cancel"), ("post", "/approve"),
                ("post", "/reject"))}
    for (method, path) in {("post", "/v1/runs"), ("get", "/v1/approvals"), *run_ops}:
        responses = doc["paths"][path][method]["responses"]
        errors = {400, 401, 403, 503} | ({404} if "{run_id}" in path else set())
        errors |= {408, 409, 413, 422} if method == "post" else set()
        errors |= {429} if path.endswith("/events") else set()
        assert errors <= {int(s) for s in responses}, (method, path, sorted(responses))
        for status in errors:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
