"""Reading one run: what ClickHouse holds of it plus the log's tail after what it holds, the same
events as the log itself, and never behind it, however far the sink lags."""

from __future__ import annotations

import httpx
import pytest

from processors.replay.dataset import event_doc
from schemas.codec import EventCodec
from tests.integration.conftest import Stack, eventually
from tests.integration.test_log_contract import read_topic

pytestmark = pytest.mark.integration


def _from_log(stack: Stack, run_id: str) -> list[dict]:
    codec = EventCodec()
    return [event_doc(codec.decode(m.value())) for m in read_topic(stack, stack.settings.events_topic)
            if m.key() == run_id.encode()]


def _over_http(http: httpx.Client, run_id: str) -> list[dict]:
    """The run's events as GET /v1/runs/{id} gives them, without the `runs show` line it adds."""
    events = http.get(f"/v1/runs/{run_id}").json()["events"]
    return [{k: v for k, v in e.items() if k != "summary"} for e in events]


def _stored(stack: Stack, run_id: str) -> int:
    return stack.sql(f"SELECT count() AS n FROM agent_events WHERE run_id = '{run_id}'")[0]["n"]


def test_a_run_read_is_the_logs_events_whether_clickhouse_holds_them_or_not(stack: Stack):
    done = stack.cli_json("submit", "Open a ticket: the lift on floor 2 is stuck", "--wait")
    run_id = done["run_id"]
    log = _from_log(stack, run_id)
    eventually(lambda: _stored(stack, run_id) == len(log), what="the sink to hold the run")
    http = stack.client("default")
    assert _over_http(http, run_id) == log
    assert stack.cli_json("runs", "show", run_id)["events"] == log


def test_reads_and_the_approval_queue_do_not_lag_a_sink_that_lags(stack: Stack):
    # The sink now inserts once every 8 s: ClickHouse is behind the log for seconds at a time.
    with stack.restarted("sink", AGENTLOG_SINK_BATCH_S="8"):
        http = stack.client("default")
        eventually(lambda: http.get("/v1/approvals").status_code == 200, what="the sink to answer")
        parked = stack.cli_json("submit", "Email the quarterly numbers to auditor@example.org", "--wait")
        assert parked["status"] == "awaiting_approval"
        run_id = parked["run_id"]
        assert _stored(stack, run_id) < len(_from_log(stack, run_id)), "the sink did not lag"
        # Read-your-writes: every event committed on the log, at once.
        assert _over_http(http, run_id) == _from_log(stack, run_id)
        assert run_id in {a["run_id"] for a in http.get("/v1/approvals").json()}
        assert http.post(f"/v1/runs/{run_id}/approve", json={"approver": "ops"}).status_code == 202
        eventually(lambda: http.get(f"/v1/runs/{run_id}").json()["status"] == "completed",
                   what="the approved run to finish")
        # Decided and done: no longer waiting, though ClickHouse may still say it is.
        assert run_id not in {a["run_id"] for a in http.get("/v1/approvals").json()}
        assert http.post(f"/v1/runs/{run_id}/approve", json={"approver": "ops"}).status_code == 409
        assert _over_http(http, run_id) == _from_log(stack, run_id)
