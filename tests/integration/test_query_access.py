"""The sink's query port: it answers only holders of the query token, outside SQL cannot write,
and a refused write leaves the sink inserting; while the sink is down the approval queue is a
503, never stale."""

from __future__ import annotations

import httpx
import pytest

from streams.query_api import query_token
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration


def test_the_query_port_asks_for_the_installations_token(stack: Stack):
    url = f"http://127.0.0.1:{stack.settings.query_port}/query"
    sql = {"sql": "SELECT count() FROM agent_events"}
    assert httpx.post(url, json=sql).status_code == 401
    assert httpx.post(url, json=sql, headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    token = query_token(stack.settings)
    answer = httpx.post(url, json=sql, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["columns"] == ["count()"]
    assert (stack.settings.path("query_token").stat().st_mode & 0o777) == 0o600


def test_a_refused_write_leaves_the_sink_inserting(stack: Stack):
    refused = stack.cli("sql", "INSERT INTO agent_events (tenant_id, run_id) VALUES ('x', 'y')", check=False)
    assert refused.returncode != 0 and "readonly" in refused.stderr.lower()
    refused = stack.cli("sql", "SET readonly = 0", check=False)
    assert refused.returncode != 0
    run_id = stack.cli_json("submit", "How many customers do we have in Germany?", "--wait")["run_id"]
    stored = f"SELECT count() AS n FROM agent_events WHERE run_id = '{run_id}'"
    eventually(lambda: stack.sql(stored)[0]["n"] >= 6, what="the sink to go on inserting")
    assert stack.sql("SELECT count() AS n FROM agent_events WHERE run_id = 'y'")[0]["n"] == 0


def test_the_approval_queue_is_a_503_while_the_store_is_down_not_a_stale_list(stack: Stack):
    http = stack.client("default")
    stack.stop("sink")
    try:
        r = http.get("/v1/approvals")
        assert r.status_code == 503 and "analytics store" in r.json()["error"]["message"]
    finally:
        stack.cli("up")
    assert http.get("/v1/approvals").status_code == 200
