"""The enforced sandbox, proved from inside: tools that try to leave their box (see hostile_tools)
run in real bubblewrap children, and each limit holds while the sandbox goes on serving."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.tools.backends import BackendConfig
from processors.tools.backends.sql import create_sample_database
from processors.tools.jail import SandboxProfile
from processors.tools.registry import ToolSpec, default_registry
from processors.tools.sandbox import ToolOutcome, WarmSandbox
from processors.tools.sandbox_pool import SandboxPool

REPO_ROOT = Path(__file__).resolve().parents[2]


def hostile(fn: str, name: str | None = None, **options: Any) -> ToolSpec:
    return ToolSpec(name=name or f"hostile_{fn}", description="A tool that tries to leave its box.",
                    input_schema={"type": "object"}, entrypoint=f"tests.integration.hostile_tools:{fn}",
                    **{"timeout_s": 10.0, **options})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sandbox-home")
    (home / "backends").mkdir()
    create_sample_database(str(home / "backends" / "shop.db"))
    (home / "query_token").write_text("secret-token")
    (home / "query_token").chmod(0o600)
    return home


@pytest.fixture(scope="module")
def cfg(home: Path) -> BackendConfig:
    return BackendConfig(docs_dir=str(REPO_ROOT / "infra" / "sample" / "docs"),
                         sql_path=str(home / "backends" / "shop.db"),
                         tickets_path=str(home / "backends" / "tickets.db"),
                         smtp_host="127.0.0.1", smtp_port=1, mail_from="agent@example.com")


@pytest.fixture(scope="module")
def pool(home: Path) -> Iterator[SandboxPool]:
    os.environ["AGENTLOG_TEST_SECRET"] = "sk-do-not-leak"  # the runtime's env must not reach a tool
    pool = SandboxPool(mode="enforced", size=1, hide=(str(home),))
    try:
        yield pool
    finally:
        pool.close()
        del os.environ["AGENTLOG_TEST_SECRET"]


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def call(pool: SandboxPool, cfg: BackendConfig, spec: ToolSpec, **input: Any) -> ToolOutcome:
    return pool.run(spec, input=input, cfg=cfg, idempotency_key="run-0001/s1")


def ok(outcome: ToolOutcome) -> dict[str, Any]:
    assert outcome.status == "ok" and outcome.output is not None, outcome
    return outcome.output


def test_no_network_unless_registered(pool: SandboxPool, cfg: BackendConfig, listener: int) -> None:
    boxed = ok(call(pool, cfg, hostile("connect"), host="127.0.0.1", port=listener))
    assert boxed["connected"] is False and "refused" in boxed["error"].lower()
    # The same tool registered with the network reaches the same port: the refusal above is the box.
    assert ok(call(pool, cfg, hostile("connect", network=True), host="127.0.0.1", port=listener))["connected"]


def test_writes_outside_the_backends_paths_fail(pool: SandboxPool, cfg: BackendConfig, home: Path,
                                                tmp_path: Path) -> None:
    for target in [REPO_ROOT / "escaped.txt", tmp_path / "escaped.txt", home / "backends" / "escaped.txt",
                   Path(cfg.sql_path)]:
        result = ok(call(pool, cfg, hostile("write"), path=str(target)))
        assert result["written"] is False, (target, result)
    assert not (REPO_ROOT / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    # The ticket store's folder is writable in create_ticket's box, yet the database beside it is not.
    create_ticket = default_registry().get("create_ticket")
    assert create_ticket is not None
    ticket = ok(call(pool, cfg, create_ticket, title="Badge reader", description="x"))
    assert ticket["created"] is True and Path(cfg.tickets_path).is_file()
    in_ticket_box = hostile("write", name="create_ticket")
    assert ok(call(pool, cfg, in_ticket_box, path=str(home / "backends" / "note.txt")))["written"] is True
    shop = ok(call(pool, cfg, in_ticket_box, path=cfg.sql_path))
    assert shop["written"] is False and "Read-only" in shop["error"]


def test_each_call_has_its_own_temporary_folder(pool: SandboxPool, cfg: BackendConfig) -> None:
    first = ok(call(pool, cfg, hostile("scratch")))
    second = ok(call(pool, cfg, hostile("scratch")))
    assert first["tmpdir"] != second["tmpdir"] and second["before"] == []
    assert first["cwd"] == first["tmpdir"] and first["tmpdir"].startswith("/tmp/tool/")


def test_no_runtime_secrets_reach_a_tool(pool: SandboxPool, cfg: BackendConfig, home: Path) -> None:
    seen = ok(call(pool, cfg, hostile("environment")))
    assert not any(k.startswith("AGENTLOG") for k in seen["env"]) and "sk-do-not-leak" not in str(seen["env"])
    # Only the box's own processes: bubblewrap's init, the child, this call.
    assert len(seen["pids"]) <= 3 and os.getpid() not in seen["pids"]
    token = ok(call(pool, cfg, hostile("read"), path=str(home / "query_token")))
    assert token["read"] is False and "secret-token" not in str(token)


def test_a_fork_bomb_is_capped_and_stopped_and_the_sandbox_goes_on(pool: SandboxPool,
                                                                   cfg: BackendConfig) -> None:
    counted = ok(call(pool, cfg, hostile("count_forks", max_processes=8), limit=200))
    assert counted["started"] < 8 and "Resource temporarily unavailable" in counted["error"]
    started = time.monotonic()
    bomb = call(pool, cfg, hostile("fork_bomb", timeout_s=2.0))
    assert bomb.status == "timeout" and time.monotonic() - started < 6, bomb
    # Nothing of the bomb survives its box: every box of this process holds at most its own three.
    assert all(int((group / "pids.current").read_text()) <= 3
               for group in Path("/sys/fs/cgroup/pids").glob(f"agentlog-sandbox-{os.getpid()}-*"))
    assert ok(call(pool, cfg, hostile("scratch")))["before"] == []


def test_what_a_call_leaves_running_is_killed(pool: SandboxPool, cfg: BackendConfig) -> None:
    assert ok(call(pool, cfg, hostile("leave_behind")))["left"] is True
    assert len(ok(call(pool, cfg, hostile("environment")))["pids"]) <= 3


def test_a_memory_hog_is_stopped_and_the_child_serves_on(pool: SandboxPool, cfg: BackendConfig) -> None:
    spec = hostile("memory_hog", memory_mb=256)
    hog = call(pool, cfg, spec)
    assert hog.status == "error" and "MemoryError" in (hog.error or ""), hog
    assert ok(call(pool, cfg, hostile("scratch", memory_mb=256)))["before"] == []


def test_cpu_and_file_size_limits(pool: SandboxPool, cfg: BackendConfig) -> None:
    started = time.monotonic()
    spun = call(pool, cfg, hostile("spin", cpu_s=1, timeout_s=20.0))
    assert spun.status == "error" and "SIGXCPU" in (spun.error or ""), spun
    assert time.monotonic() - started < 10
    big = call(pool, cfg, hostile("big_file", max_file_mb=4), mb=16)
    assert big.status == "error" and "File too large" in (big.error or ""), big
    assert ok(call(pool, cfg, hostile("big_file", max_file_mb=4), mb=2))["written_mb"] == 2


def test_built_in_tools_run_warm_in_one_box_per_slot(cfg: BackendConfig, home: Path) -> None:
    sandbox = WarmSandbox(profile=SandboxProfile(read_only=(cfg.docs_dir, cfg.sql_path)), hide=(str(home),))
    try:
        query = {"sql": "SELECT count(*) FROM customers"}
        first = sandbox.run(tool="query_sql", input=query, cfg=cfg, idempotency_key="k", timeout_s=5)
        assert sandbox._proc is not None
        box = sandbox._proc.pid  # which box served is the point here
        second = sandbox.run(tool="search_docs", input={"query": "refund"}, cfg=cfg, idempotency_key="k",
                             timeout_s=5)
        assert first.status == second.status == "ok" and sandbox._proc.pid == box
        refused = sandbox.run(tool="query_sql", input={"sql": "DELETE FROM orders"}, cfg=cfg,
                              idempotency_key="k", timeout_s=5)
        assert refused.status == "error" and "read-only" in (refused.error or "")
    finally:
        sandbox.close()
