"""MCP servers as tools, against real servers the tests start (official SDK): a stdio server
started inside the sandbox, a streamable HTTP server, and servers that are down, slow or answer
garbage. Listing, the plan contract, the guard and the calls all go the way of built-in tools."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies import parse_policy
from processors.plan import validate_plan
from processors.tools.backends import BackendConfig
from processors.tools.mcp_tools import McpServer, mcp_specs
from processors.tools.registry import ToolRegistry, ToolSpec, default_registry
from processors.tools.sandbox_pool import SandboxPool
from streams.settings import Settings
from streams.tools_config import list_server, tool_registry
from tests.free_ports import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
STDIO = McpServer(name="docs", command=(sys.executable, "-m", "tests.integration.mcp_servers", "stdio"),
                  timeout_s=20.0)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("mcp-home")
    return Settings(home=home, docs_dir=REPO_ROOT / "infra" / "sample" / "docs")


@pytest.fixture(scope="module")
def cfg() -> BackendConfig:
    return BackendConfig(docs_dir=str(REPO_ROOT / "infra" / "sample" / "docs"),
                         sql_path="/nonexistent/shop.db", tickets_path="/nonexistent/tickets.db",
                         smtp_host="127.0.0.1", smtp_port=1,
                         mail_from="agent@example.com")


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.mcp_servers", "http", str(port)],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()  # uvicorn waits for open streams on SIGTERM
        proc.wait(10)


@pytest.fixture(scope="module")
def pool(settings: Settings) -> Iterator[SandboxPool]:
    os.environ["AGENTLOG_MCP_TEST_SECRET"] = "sk-do-not-leak"
    pool = SandboxPool(mode="enforced", size=1, hide=(str(settings.home),))
    try:
        yield pool
    finally:
        pool.close()
        del os.environ["AGENTLOG_MCP_TEST_SECRET"]


@pytest.fixture(scope="module")
def stdio_tools(pool: SandboxPool, settings: Settings) -> dict[str, ToolSpec]:
    listed = list_server(pool, STDIO, settings)
    assert listed is not None
    return {s.name: s for s in mcp_specs(STDIO, listed)}


def test_a_stdio_server_lists_its_tools_namespaced_with_their_schemas(
        stdio_tools: dict[str, ToolSpec]) -> None:
    assert set(stdio_tools) == {"mcp:docs.search", "mcp:docs.slow", "mcp:docs.probe", "mcp:docs.fail"}
    search = stdio_tools["mcp:docs.search"]
    assert search.input_schema["required"] == ["query"] and search.input_errors({"query": 3})
    # The server calls it read-only; that is recorded, not believed.
    assert search.annotations == {"read_only_hint": True} and search.side_effects is True
    assert stdio_tools["mcp:docs.fail"].annotations == {"destructive_hint": True}


def test_plans_and_the_guard_treat_mcp_tools_like_built_in_ones(stdio_tools: dict[str, ToolSpec]) -> None:
    registry = ToolRegistry([*default_registry(), *stdio_tools.values()])
    step = {"id": "s1", "objective": "find the refund rules", "tool": "mcp:docs.search",
            "successCriteria": "a passage is found"}
    plan = {"runId": "run-00000001", "maxSteps": 2, "budgetUsd": 0.1, "stopConditions": ["answered"]}
    good = validate_plan({**plan, "steps": [{**step, "input": {"query": "refunds"}}]}, registry=registry)
    assert good.valid, good.errors
    bad = validate_plan({**plan, "steps": [{**step, "input": {"q": "refunds"}}]}, registry=registry)
    assert not bad.valid and any("query" in e for e in bad.errors)
    policy = parse_policy("""
version: 1
default: allow
rules:
  - name: docs_server_needs_a_person
    when: {tool_prefix: "mcp:docs."}
    action: require_human_approval
  - name: never_fail
    when: {tool: "mcp:docs.fail"}
    action: deny
""", registry=registry)
    decide = lambda tool, args: policy.evaluate(tool=tool, input=args, run_metrics={})  # noqa: E731
    assert decide("mcp:docs.search", {"query": "x"}).rule == "docs_server_needs_a_person"
    assert decide("mcp:docs.fail", {"reason": "x"}).action == "deny"
    assert decide("mcp:docs.search", {"query": 3}).action == "deny"  # the server's schema, enforced
    assert decide("search_docs", {"query": "x"}).action == "allow"


def test_a_stdio_server_runs_inside_the_sandbox(pool: SandboxPool, cfg: BackendConfig,
                                                stdio_tools: dict[str, ToolSpec]) -> None:
    found = pool.run(stdio_tools["mcp:docs.search"], input={"query": "refunds"}, cfg=cfg,
                     idempotency_key="r/s1")
    assert found.status == "ok" and found.output is not None, found
    assert found.output["content"] == [{"type": "text",
                                        "text": "Annual plans are refunded pro rata within 30 days."}]
    assert found.output["server"] == "docs" and found.output["tool"] == "search"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        probed = pool.run(stdio_tools["mcp:docs.probe"], input={"port": listener.getsockname()[1]}, cfg=cfg,
                          idempotency_key="r/s2")
    assert probed.status == "ok" and probed.output is not None, probed
    seen = probed.output["structured"]
    # Its own PID namespace (bubblewrap, the child, the call, the server), no network, no secrets.
    assert seen["processes"] <= 5 and seen["connected"] is False and seen["secret_in_env"] is False


def test_a_streamable_http_server_is_listed_and_called(pool: SandboxPool, cfg: BackendConfig,
                                                       settings: Settings, http_url: str) -> None:
    server = McpServer(name="wiki", url=http_url, timeout_s=10.0)
    listed = list_server(pool, server, settings)
    assert listed is not None
    tools = {s.name: s for s in mcp_specs(server, listed)}
    assert "mcp:wiki.search" in tools and tools["mcp:wiki.search"].network is True
    found = pool.run(tools["mcp:wiki.search"], input={"query": "the poisoned doc"}, cfg=cfg,
                     idempotency_key="r/s1")
    assert found.status == "ok" and found.output is not None, found
    assert "attacker@evil.io" in found.output["content"][0]["text"]  # data, recorded as returned
    failed = pool.run(tools["mcp:wiki.fail"], input={"reason": "boom"}, cfg=cfg, idempotency_key="r/s2")
    assert failed.status == "error" and "reported an error" in (failed.error or ""), failed


def test_servers_that_are_down_slow_or_answer_garbage_give_errors_not_exceptions(
        pool: SandboxPool, cfg: BackendConfig, settings: Settings, http_url: str,
        stdio_tools: dict[str, ToolSpec]) -> None:
    (closed,) = free_ports(1)
    assert list_server(pool, McpServer(name="down", url=f"http://127.0.0.1:{closed}/mcp", timeout_s=5.0),
                       settings) is None
    garbage = McpServer(name="junk", timeout_s=5.0,
                        command=(sys.executable, "-m", "tests.integration.mcp_servers", "garbage"))
    assert list_server(pool, garbage, settings) is None
    wiki = McpServer(name="wiki", url=http_url, timeout_s=2.0)
    slow = mcp_specs(wiki, [{"name": "slow", "input_schema": {"type": "object"}}])[0]
    started = time.monotonic()
    outcome = pool.run(slow, input={"seconds": 30}, cfg=cfg, idempotency_key="r/s3")
    assert outcome.status == "error" and "within 2s" in (outcome.error or ""), outcome
    assert time.monotonic() - started < 10
    down_tool = mcp_specs(McpServer(name="down", url=f"http://127.0.0.1:{closed}/mcp", timeout_s=5.0),
                          [{"name": "search"}])[0]
    down = pool.run(down_tool, input={"query": "x"}, cfg=cfg, idempotency_key="r/s4")
    assert down.status == "error" and "could not call search" in (down.error or ""), down
    # And the sandbox goes on.
    again = pool.run(stdio_tools["mcp:docs.search"], input={"query": "refunds"}, cfg=cfg,
                     idempotency_key="r/s5")
    assert again.status == "ok", again


def test_the_tools_file_registers_configured_servers(settings: Settings, http_url: str,
                                                     tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    tools_file = tmp_path / "tools.yaml"
    tools_file.write_text(f"mcp_servers:\n  wiki: {{url: '{http_url}', timeout_s: 10}}\n"
                          f"  gone: {{url: 'http://127.0.0.1:{closed}/mcp', timeout_s: 3}}\n")
    registry = tool_registry(settings.model_copy(update={"tools_file": tools_file}))
    assert {"mcp:wiki.search", "mcp:wiki.probe", "search_docs"} <= set(registry.names())
    assert not [n for n in registry.names() if n.startswith("mcp:gone.")]  # down: no tools, logged
