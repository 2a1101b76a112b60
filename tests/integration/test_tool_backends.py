"""The four tools' real local backends, the mailbox server and the sandbox; no mocks."""

from __future__ import annotations

import hashlib
import mailbox
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from processors.tools.backends import ToolError, run_tool
from processors.tools.backends.config import BackendConfig
from processors.tools.backends.email import message_id_for
from processors.tools.backends.mailbox import read_mailbox, start_smtp_server
from processors.tools.backends.sql import create_sample_database
from processors.tools.backends.tickets import count_tickets, list_tickets
from processors.tools.sandbox import ToolOutcome, WarmSandbox, run_sandboxed

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DOCS = REPO_ROOT / "infra" / "sample" / "docs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mailbox server exited early: {proc.stderr.read() if proc.stderr else ''!r}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mailbox server did not listen on port {port}")


@pytest.fixture
def cfg(tmp_path: Path) -> BackendConfig:
    config = BackendConfig(
        docs_dir=str(SAMPLE_DOCS),
        sql_path=str(tmp_path / "shop.db"),
        tickets_path=str(tmp_path / "tickets.db"),
        smtp_host="127.0.0.1",
        smtp_port=_free_port(),  # nothing listens here unless a test starts the server
        mail_from="agent@acme-analytics.example",
    )
    create_sample_database(config.sql_path)
    return config


@pytest.fixture
def smtp(cfg: BackendConfig, tmp_path: Path) -> Iterator[tuple[BackendConfig, str]]:
    """The real mailbox server, run as the stack runs it; stopped with SIGTERM."""
    maildir = str(tmp_path / "maildir")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processors.tools.backends.mailbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(cfg.smtp_port),
            "--maildir",
            maildir,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(cfg.smtp_port, proc)
        yield cfg, maildir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("mailbox server ignored SIGTERM")
    assert returncode == 0, proc.stderr.read() if proc.stderr else b""


# --- search_docs -----------------------------------------------------------------------------


def test_search_finds_the_refund_policy(cfg: BackendConfig) -> None:
    out = run_tool(
        "search_docs", {"query": "how many days do I have to get a refund"}, cfg, idempotency_key=""
    )
    assert out["total"] >= 1
    assert len(out["hits"]) == 3  # the default top_k
    best = out["hits"][0]
    assert best["doc"] == "refund-policy.md"
    assert best["title"] == "Refund Policy"
    assert "30 days" in best["passage"]
    assert all(len(h["passage"]) <= 500 for h in out["hits"])
    scores = [h["score"] for h in out["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_top_k(cfg: BackendConfig) -> None:
    out = run_tool(
        "search_docs", {"query": "backups retention days", "top_k": 5}, cfg, idempotency_key=""
    )
    assert len(out["hits"]) == 5
    assert out["hits"][0]["doc"] == "data-retention.md"


@pytest.mark.parametrize(
    "query",
    [
        'what\'s "DROP" (x)',
        '"',
        "NEAR(refund days, 2)",
        "AND OR NOT",
        "title:refund ^days *",
        "'; DROP TABLE passages; --",
        "!!! ??? ...",
        "the of and",
        "\x00 \u200b 🙂 réfund",
        "refund " * 500,
    ],
)
def test_search_survives_hostile_queries(cfg: BackendConfig, query: str) -> None:
    out = run_tool("search_docs", {"query": query}, cfg, idempotency_key="")
    assert isinstance(out["hits"], list)
    assert isinstance(out["total"], int)


def test_search_sees_files_added_after_indexing(cfg: BackendConfig, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DOCS, docs)
    local = replace(cfg, docs_dir=str(docs))
    assert run_tool("search_docs", {"query": "zeppelin"}, local, idempotency_key="")["total"] == 0
    (docs / "travel.md").write_text(
        "# Travel Policy\n\nBusiness trips by zeppelin need approval.\n"
    )
    hits = run_tool("search_docs", {"query": "zeppelin"}, local, idempotency_key="")["hits"]
    assert [(h["doc"], h["title"]) for h in hits] == [("travel.md", "Travel Policy")]


def test_search_reports_a_missing_folder(cfg: BackendConfig, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="does not exist"):
        run_tool(
            "search_docs",
            {"query": "x"},
            replace(cfg, docs_dir=str(tmp_path / "nope")),
            idempotency_key="",
        )


# --- query_sql -------------------------------------------------------------------------------


def test_query_sql_returns_rows(cfg: BackendConfig) -> None:
    out = run_tool(
        "query_sql",
        {"sql": "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status"},
        cfg,
        idempotency_key="",
    )
    assert out["columns"] == ["status", "n"]
    assert [r[0] for r in out["rows"]] == ["paid", "pending", "refunded"]
    assert sum(r[1] for r in out["rows"]) == 120
    assert out["row_count"] == 3
    assert out["truncated"] is False


def test_query_sql_caps_rows_at_100(cfg: BackendConfig) -> None:
    out = run_tool("query_sql", {"sql": "SELECT * FROM orders"}, cfg, idempotency_key="")
    assert len(out["rows"]) == out["row_count"] == 100
    assert out["truncated"] is True


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "DROP TABLE customers",
        "UPDATE customers SET plan = 'free'",
        "PRAGMA query_only=OFF",
        "ATTACH DATABASE 'other.db' AS other",
        "SELECT 1; DELETE FROM orders",
    ],
)
def test_query_sql_refuses_writes(cfg: BackendConfig, sql: str) -> None:
    before = hashlib.sha256(Path(cfg.sql_path).read_bytes()).hexdigest()
    with pytest.raises(ToolError, match="query_sql"):
        run_tool("query_sql", {"sql": sql}, cfg, idempotency_key="")
    assert hashlib.sha256(Path(cfg.sql_path).read_bytes()).hexdigest() == before
    counts = run_tool(
        "query_sql",
        {"sql": "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM customers)"},
        cfg,
        idempotency_key="",
    )
    assert counts["rows"] == [[120, 20]]


def test_query_sql_write_error_is_clear(cfg: BackendConfig) -> None:
    with pytest.raises(ToolError, match="read-only"):
        run_tool("query_sql", {"sql": "DELETE FROM orders"}, cfg, idempotency_key="")


# --- create_ticket ---------------------------------------------------------------------------


def test_ticket_idempotency_key_opens_one_ticket(cfg: BackendConfig) -> None:
    ticket = {
        "title": "Refund for order 42",
        "description": "Customer asks for a refund.",
        "priority": "high",
    }
    first = run_tool("create_ticket", ticket, cfg, idempotency_key="run-1/step-3")
    second = run_tool("create_ticket", ticket, cfg, idempotency_key="run-1/step-3")
    assert first == {
        "ticket_id": "TCK-000001",
        "status": "open",
        "priority": "high",
        "created": True,
    }
    assert second == {**first, "created": False}
    assert count_tickets(cfg.tickets_path) == 1

    other = run_tool(
        "create_ticket", {"title": "t", "description": ""}, cfg, idempotency_key="run-2/step-1"
    )
    assert other["ticket_id"] == "TCK-000002"
    assert other["priority"] == "normal"
    assert [t["idempotency_key"] for t in list_tickets(cfg.tickets_path)] == [
        "run-1/step-3",
        "run-2/step-1",
    ]


def test_ticket_store_absent_means_no_tickets(tmp_path: Path) -> None:
    assert count_tickets(str(tmp_path / "none.db")) == 0
    assert list_tickets(str(tmp_path / "none.db")) == []


# --- send_email and the mailbox server -------------------------------------------------------

EMAIL = {
    "to": '"Bob" <BOB@Example.com>, carol@x.org',
    "bcc": ["audit@acme-analytics.example"],
    "subject": "Your refund",
    "body": "Hello Bob,\nyour refund is on its way.\n",
}


def test_email_is_delivered_once_with_bcc_only_in_the_envelope(
    smtp: tuple[BackendConfig, str],
) -> None:
    cfg, maildir = smtp
    out = run_tool("send_email", EMAIL, cfg, idempotency_key="run-7/step-2")
    assert out["message_id"] == message_id_for("run-7/step-2")
    assert out["recipients"] == ["BOB@Example.com", "carol@x.org", "audit@acme-analytics.example"]
    assert out["accepted"] == 3

    messages = read_mailbox(maildir)
    assert len(messages) == 1
    msg = messages[0]
    assert msg["message_id"] == out["message_id"]
    assert msg["idempotency_key"] == "run-7/step-2"
    assert msg["from"] == "agent@acme-analytics.example"
    assert msg["to"] == ["BOB@Example.com", "carol@x.org"]
    assert msg["cc"] == [] and msg["bcc"] == []
    assert msg["subject"] == "Your refund"
    assert "refund is on its way" in msg["body"]
    assert "audit@acme-analytics.example" in msg["envelope_recipients"]
    for raw in mailbox.Maildir(maildir, create=False):
        assert raw["Bcc"] is None
        assert "audit@acme-analytics.example" not in (raw["To"] or "") + (raw["Cc"] or "")


def test_email_sent_twice_with_one_key_is_stored_once(smtp: tuple[BackendConfig, str]) -> None:
    cfg, maildir = smtp
    first = run_tool("send_email", EMAIL, cfg, idempotency_key="run-8/step-1")
    second = run_tool("send_email", EMAIL, cfg, idempotency_key="run-8/step-1")
    assert first["message_id"] == second["message_id"]
    assert second["accepted"] == 3  # the duplicate is acknowledged, just not stored
    assert len(read_mailbox(maildir)) == 1
    run_tool("send_email", EMAIL, cfg, idempotency_key="run-8/step-2")
    assert [m["idempotency_key"] for m in read_mailbox(maildir)] == ["run-8/step-1", "run-8/step-2"]


def test_mailbox_remembers_keys_across_restarts(cfg: BackendConfig, tmp_path: Path) -> None:
    maildir = str(tmp_path / "maildir")
    for _ in range(2):
        controller = start_smtp_server(host="127.0.0.1", port=cfg.smtp_port, maildir=maildir)
        try:
            run_tool("send_email", EMAIL, cfg, idempotency_key="run-9/step-1")
        finally:
            controller.stop()
    assert len(read_mailbox(maildir)) == 1


def test_email_rejects_bad_addresses_and_header_injection(cfg: BackendConfig) -> None:
    with pytest.raises(ToolError, match="invalid address"):
        run_tool("send_email", {**EMAIL, "to": "not an address"}, cfg, idempotency_key="k")
    with pytest.raises(ToolError, match="line breaks"):
        run_tool(
            "send_email", {**EMAIL, "to": "a@x.org\r\nBcc: evil@x.org"}, cfg, idempotency_key="k"
        )
    with pytest.raises(ToolError, match="cannot build"):
        run_tool(
            "send_email", {**EMAIL, "subject": "hi\r\nBcc: evil@x.org"}, cfg, idempotency_key="k"
        )


def test_email_reports_an_unreachable_relay(cfg: BackendConfig) -> None:
    with pytest.raises(ToolError, match="cannot reach the SMTP relay"):
        run_tool("send_email", EMAIL, cfg, idempotency_key="k")


# --- run_tool and the sandbox ----------------------------------------------------------------


def test_run_tool_rejects_unknown_tools(cfg: BackendConfig) -> None:
    with pytest.raises(ToolError, match="unknown tool 'rm_rf'"):
        run_tool("rm_rf", {}, cfg, idempotency_key="k")


def test_sandbox_runs_a_query(cfg: BackendConfig) -> None:
    outcome = run_sandboxed(
        tool="query_sql",
        input={"sql": "SELECT count(*) FROM customers"},
        cfg=cfg,
        idempotency_key="k",
        timeout_s=30,
    )
    assert outcome.status == "ok", outcome.error
    assert outcome.output is not None and outcome.output["rows"] == [[20]]
    assert outcome.error is None
    assert outcome.duration_ms > 0


def test_sandbox_side_effects_keep_their_idempotency(cfg: BackendConfig) -> None:
    for _ in range(2):
        outcome = run_sandboxed(
            tool="create_ticket",
            input={"title": "t", "description": "d"},
            cfg=cfg,
            idempotency_key="run-3/step-1",
            timeout_s=30,
        )
        assert outcome.status == "ok", outcome.error
    assert count_tickets(cfg.tickets_path) == 1


def test_sandbox_times_out(cfg: BackendConfig) -> None:
    outcome = run_sandboxed(
        tool="search_docs", input={"query": "refund"}, cfg=cfg, idempotency_key="k", timeout_s=0.001
    )
    assert outcome.status == "timeout"
    assert outcome.output is None
    assert outcome.error is not None and "timed out" in outcome.error


@pytest.mark.parametrize(
    ("tool", "tool_input", "message"),
    [
        ("no_such_tool", {}, "unknown tool"),
        ("query_sql", {"sql": "DROP TABLE customers"}, "read-only"),
        ("search_docs", {"query": object()}, "not JSON-serialisable"),
    ],
)
def test_sandbox_reports_errors(
    cfg: BackendConfig, tool: str, tool_input: dict[str, object], message: str
) -> None:
    outcome = run_sandboxed(tool=tool, input=tool_input, cfg=cfg, idempotency_key="k", timeout_s=30)
    assert isinstance(outcome, ToolOutcome)
    assert outcome.status == "error"
    assert outcome.output is None
    assert outcome.error is not None and message in outcome.error


def test_sandbox_reports_a_killed_child(cfg: BackendConfig) -> None:
    # Runs forever until the 1-second CPU limit kills it with SIGXCPU.
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    outcome = run_sandboxed(
        tool="query_sql",
        input={"sql": endless},
        cfg=cfg,
        idempotency_key="k",
        timeout_s=30,
        cpu_s=1,
    )
    assert outcome.status == "error"
    assert outcome.error is not None and "killed by SIGXCPU" in outcome.error


# --- the warm sandbox the executor uses ----------------------------------------------------------


def test_warm_sandbox_serves_calls_from_one_child_and_replaces_it_after_a_timeout(
    cfg: BackendConfig,
) -> None:
    sandbox = WarmSandbox()
    try:
        query = {"sql": "SELECT count(*) FROM customers"}
        first = sandbox.run(tool="query_sql", input=query, cfg=cfg, idempotency_key="k", timeout_s=30)
        child = sandbox._proc.pid  # which process served is the point here
        second = sandbox.run(tool="query_sql", input=query, cfg=cfg, idempotency_key="k", timeout_s=30)
        assert first.status == second.status == "ok" and second.output["rows"] == [[20]]
        assert sandbox._proc.pid == child
        # A warm child answers a small query in well under a millisecond: give it real work.
        long_query = {"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                             "WHERE x < 50000000) SELECT count(*) FROM c"}
        slow = sandbox.run(tool="query_sql", input=long_query, cfg=cfg, idempotency_key="k",
                           timeout_s=0.2)
        assert slow.status == "timeout" and "child killed" in (slow.error or "")
        again = sandbox.run(tool="query_sql", input=query, cfg=cfg, idempotency_key="k", timeout_s=30)
        assert again.status == "ok" and sandbox._proc.pid != child
    finally:
        sandbox.close()


def test_warm_sandbox_recovers_from_a_killed_child_and_keeps_tool_errors_apart(
    cfg: BackendConfig,
) -> None:
    sandbox = WarmSandbox(max_calls=2)
    try:
        ok = sandbox.run(tool="search_docs", input={"query": "refund"}, cfg=cfg, idempotency_key="k",
                         timeout_s=30)
        assert ok.status == "ok"
        # A child that dies while it holds a call: that call says so, and does not hang. (Stopped
        # first, so that it cannot answer before it dies.)
        child = sandbox._proc
        assert child is not None
        os.kill(child.pid, signal.SIGSTOP)
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(sandbox.run, tool="search_docs", input={"query": "refund"}, cfg=cfg,
                               idempotency_key="k", timeout_s=30)
            time.sleep(0.3)
            os.kill(child.pid, signal.SIGKILL)
            dead = call.result(timeout=30)
        assert dead.status == "error" and "sandbox child" in (dead.error or ""), dead
        # A child that died between calls is replaced before the next one.
        assert sandbox.run(tool="search_docs", input={"query": "refund"}, cfg=cfg,
                           idempotency_key="k", timeout_s=30).status == "ok"
        os.kill(sandbox._proc.pid, signal.SIGKILL)
        sandbox._proc.wait()
        assert sandbox.run(tool="search_docs", input={"query": "refund"}, cfg=cfg,
                           idempotency_key="k", timeout_s=30).status == "ok"
        refused = sandbox.run(tool="query_sql", input={"sql": "DELETE FROM orders"}, cfg=cfg,
                              idempotency_key="k", timeout_s=30)
        assert refused.status == "error" and "sandbox" not in (refused.error or "")
        served = [sandbox.run(tool="search_docs", input={"query": "refund"}, cfg=cfg,
                              idempotency_key="k", timeout_s=30).status for _ in range(3)]
        assert served == ["ok", "ok", "ok"]  # replaced after every 2 calls, transparently
    finally:
        sandbox.close()
