"""The memory service owns the local store: while it runs, `agentlog memory …` in other processes
goes through it (chDB serves one process per path), and it sweeps expired memories by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sinks.memory_store import MemoryStore
from streams.kafka import ensure_topics
from streams.memory_ops import MemorySettings, owner_alive
from streams.settings import Settings, load_settings
from tests.free_ports import free_ports


def agentlog(env: dict[str, str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "agentlog"), *args], env=env, input=input,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory, stack):
    home = tmp_path_factory.mktemp("memory-service")
    (memory_port,) = free_ports(1)
    # The stack's broker, with topics of their own and an instance of its own: this service is not
    # the stack's (whose memory service it must neither fence nor answer for).
    env = {**os.environ, "AGENTLOG_HOME": str(home), "AGENTLOG_MEMORY_PORT": str(memory_port),
           **{k: stack.env[k] for k in ("AGENTLOG_KAFKA_PORT", "AGENTLOG_BROKERS")},
           "AGENTLOG_TOPIC_PREFIX": "memtest", "AGENTLOG_INSTANCE_ID": "memtest",
           "AGENTLOG_MEMORY_SWEEP_S": "0.5", "AGENTLOG_METRICS_PORT": "0"}
    ensure_topics(Settings(kafka_port=int(env["AGENTLOG_KAFKA_PORT"]), brokers=int(env["AGENTLOG_BROKERS"]),
                           topic_prefix="memtest", home=home))
    proc = subprocess.Popen([sys.executable, "-m", "streams.services.memory"], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not owner_alive(load_settings(), MemorySettings(port=int(memory_port))):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the memory service did not become ready"
        time.sleep(0.1)
    yield env, proc
    proc.terminate()
    proc.wait(timeout=30)


def test_commands_go_through_the_service_and_expired_memories_are_swept(service, tmp_path):
    env, proc = service
    lines = tmp_path / "m.jsonl"
    short = {"id": "short", "text": "call +49 30 901820 about the audit", "ttl_s": 2}
    long = {"id": "long", "text": "the audit is due in March"}
    lines.write_text(json.dumps(short) + "\n" + json.dumps(long) + "\n")
    refused = agentlog(env, "memory", "import", "--tenant", "acme", str(lines))
    assert refused.returncode == 1 and "has not opted in" in refused.stderr
    assert agentlog(env, "memory", "opt-in", "--tenant", "acme").returncode == 0
    done = agentlog(env, "memory", "import", "--tenant", "acme", str(lines), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stored"] == 2
    found = json.loads(agentlog(env, "memory", "search", "--tenant", "acme", "--json", "audit").stdout)
    assert {r["id"]: r["text"] for r in found["results"]} == {
        "short": "call <PHONE_NUMBER> about the audit", "long": "the audit is due in March"}

    time.sleep(3)  # "short" expires, then the service's next sweep deletes it
    found = json.loads(agentlog(env, "memory", "search", "--tenant", "acme", "--json", "audit").stdout)
    assert [r["id"] for r in found["results"]] == ["long"]
    forgot = agentlog(env, "memory", "forget", "--tenant", "acme", "--id", "long", "--json")
    assert json.loads(forgot.stdout)["forgotten"] == ["long"]

    proc.terminate()
    proc.wait(timeout=30)
    held = MemoryStore.connect(url=None, chdb_path=str(Path(env["AGENTLOG_HOME"]) / "memory"))
    try:
        rows = held._client.query("SELECT memory_id FROM memories").result_rows
    finally:
        held.close()
    assert rows == []  # "short" swept, "long" forgotten: gone from storage, not only hidden
