"""The memory store on real chDB and `agentlog memory` on it: opt-in, tenant isolation, TTL on
every read path, sweeping, forgetting, and the CLI's contract (import, search, forget, redact)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.memory.records import ImportItem, prepare
from processors.memory.redaction import redactor
from sinks.memory_store import MemoryStore, NotOptedIn
from streams.cli import main
from tests.free_ports import free_ports

# A day ahead of the clock: the table's TTL clause deletes expired rows by the real clock, at
# ClickHouse's own pace, and a memory that expires "ten minutes after NOW" must not be gone before
# the test that sweeps it runs (the module is imported when the session starts, maybe long before).
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


@pytest.fixture
def store(tmp_path: Path):
    s = MemoryStore.connect(url=None, chdb_path=str(tmp_path / "memory"))
    try:
        yield s
    finally:
        s.close()


def remember(store: MemoryStore, tenant: str, *items: ImportItem, ttl_s: int = 3600):
    records = prepare(items, tenant_id=tenant, redactor=redactor(), default_ttl_s=ttl_s, now=NOW)
    store.put(tenant, records)
    return records


def test_a_tenant_that_has_not_opted_in_stores_nothing(store):
    with pytest.raises(NotOptedIn):
        store.put(
            "acme",
            prepare([ImportItem("x")], tenant_id="acme", redactor=redactor(), default_ttl_s=60, now=NOW),
        )
    assert store.count("acme") == 0 and not store.opted_in("acme")


def test_tenants_never_see_each_other(store):
    for tenant in ("acme", "globex"):
        store.opt_in(tenant, now=NOW)
    [mine] = remember(store, "acme", ImportItem("Our project code is ORION-7"))
    remember(store, "globex", ImportItem("Globex project code is HELIOS"))
    assert [f.memory.text for f in store.search("acme", "project code", now=NOW)] == [
        "Our project code is ORION-7"
    ]
    assert store.get("globex", mine.memory_id, now=NOW) is None
    assert store.forget("globex", memory_id=mine.memory_id) == []
    assert store.get("acme", mine.memory_id, now=NOW) is not None
    assert [m.text for m in store.memories("globex", now=NOW)] == ["Globex project code is HELIOS"]
    with pytest.raises(ValueError, match="of the tenant"):
        store.put("globex", [mine])


def test_an_expired_memory_is_never_returned_and_is_swept(store):
    store.opt_in("acme", now=NOW)
    [short, _] = remember(
        store,
        "acme",
        ImportItem("deploy freeze until the audit ends", ttl_s=600),
        ImportItem("deploy days are Tuesdays"),
    )
    later = NOW + timedelta(seconds=601)
    assert store.get("acme", short.memory_id, now=NOW) is not None
    assert store.get("acme", short.memory_id, now=later) is None
    assert [f.memory.text for f in store.search("acme", "deploy freeze", now=later)] == [
        "deploy days are Tuesdays"
    ]
    assert [m.text for m in store.memories("acme", now=later)] == ["deploy days are Tuesdays"]
    assert store.sweep(now=later) == 1
    assert store.count("acme") == 1


def test_forgetting_a_memory_a_subject_everything_and_opting_out(store):
    store.opt_in("acme", now=NOW)
    a, b, c = remember(
        store,
        "acme",
        ImportItem("jane likes tea", subject="jane"),
        ImportItem("jane is on call", subject="jane"),
        ImportItem("the office opens at 9"),
    )
    assert store.forget("acme", memory_id=c.memory_id) == [c.memory_id]
    assert store.search("acme", "office", now=NOW) == []
    assert store.forget("acme", subject="jane") == sorted([a.memory_id, b.memory_id])
    assert store.count("acme") == 0
    remember(store, "acme", ImportItem("something new"))
    assert len(store.opt_out("acme", now=NOW)) == 1
    assert store.count("acme") == 0 and not store.opted_in("acme")


def test_search_by_subject_and_a_stored_id_replaced(store):
    store.opt_in("acme", now=NOW)
    remember(
        store,
        "acme",
        ImportItem("prefers e-mail", subject="jane", id="m1"),
        ImportItem("prefers phone calls", subject="joe", id="m2"),
    )
    assert [f.memory.memory_id for f in store.search("acme", "prefers", subject="joe", now=NOW)] == ["m2"]
    remember(store, "acme", ImportItem("prefers chat now", subject="jane", id="m1"))
    assert store.get("acme", "m1", now=NOW).text == "prefers chat now"
    assert store.count("acme") == 2


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory, stack):
    home = tmp_path_factory.mktemp("memory-home")
    runner = CliRunner()
    # Nothing answers on this port: the commands open the store themselves; they record their
    # changes in the stack's memory log.
    env = {"AGENTLOG_HOME": str(home), "AGENTLOG_MEMORY_PORT": str(free_ports(1)[0]),
           **{k: stack.env[k] for k in ("AGENTLOG_KAFKA_PORT", "AGENTLOG_BROKERS")}}

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return run


def test_cli_import_needs_opt_in_then_stores_redacted_and_searches(cli, tmp_path):
    lines = tmp_path / "memories.jsonl"
    lines.write_text(
        json.dumps({"id": "code", "text": "Our project code is ORION-7; ask jane.doe@acme.com"})
        + "\n"
        + json.dumps(
            {"text": "Refunds over 500 EUR need the finance team", "subject": "refunds", "ttl_s": 86400}
        )
        + "\n"
    )
    refused = cli("memory", "import", "--tenant", "acme", str(lines))
    assert refused.exit_code == 1 and "has not opted in" in refused.output
    assert json.loads(cli("memory", "list", "--tenant", "acme", "--json").output) == []

    assert cli("memory", "opt-in", "--tenant", "acme", "--ttl", "30d").exit_code == 0
    assert json.loads(cli("memory", "list", "--json").output) == [
        {"tenant": "acme", "default_ttl_s": 30 * 86400, "memories": 0}]
    done = cli("memory", "import", "--tenant", "acme", str(lines), "--json")
    assert json.loads(done.output)["stored"] == 2

    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"id": "q1", "query": "what is our project code?"})
        + "\n"
        + json.dumps({"id": "q2", "query": "who approves a refund"})
        + "\n"
    )
    out = [
        json.loads(line)
        for line in cli(
            "memory", "search", "--tenant", "acme", "--k", "1", "--queries", str(queries)
        ).output.splitlines()
    ]
    assert [o["id"] for o in out] == ["q1", "q2"]
    assert out[0]["results"][0]["id"] == "code"
    assert out[0]["results"][0]["text"] == "Our project code is ORION-7; ask <EMAIL_ADDRESS>"
    assert set(out[0]["results"][0]) == {"id", "text", "score", "expires_at"}
    assert "finance" in out[1]["results"][0]["text"]
    assert (
        json.loads(cli("memory", "search", "--tenant", "globex", "--json", "project code").output)["results"]
        == []
    )

    assert json.loads(cli("memory", "forget", "--tenant", "acme", "--id", "code", "--json").output)[
        "forgotten"
    ] == ["code"]
    assert cli("memory", "forget", "--tenant", "acme", "--id", "code").exit_code == 1
    assert cli("memory", "forget", "--tenant", "acme", "--id", "x", "--all").exit_code == 1
    assert json.loads(cli("memory", "list", "--json").output)[0]["memories"] == 1
    gone = json.loads(cli("memory", "opt-out", "--tenant", "acme", "--json").output)["forgotten"]
    assert len(gone) == 1
    assert cli("memory", "import", "--tenant", "acme", str(lines)).exit_code == 1
    assert json.loads(cli("memory", "list", "--json").output) == []


def test_cli_redact_prints_one_line_per_input(cli):
    out = cli("memory", "redact", "-", input='{"text": "call +33 1 42 68 53 00"}\n{"text": "nothing"}\n')
    got = [json.loads(line) for line in out.output.splitlines()]
    assert got == [
        {"text": "call <PHONE_NUMBER>", "entities": [{"type": "PHONE_NUMBER", "start": 5, "end": 22}]},
        {"text": "nothing", "entities": []},
    ]
    assert cli("memory", "redact", "-", input="not json\n").exit_code == 1


def test_a_search_sees_what_another_writer_stored(store, tmp_path):
    """Against a server other processes write too: the index follows their writes and deletes."""
    import clickhouse_connect

    other = MemoryStore(clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'memory'}"))
    store.opt_in("acme", now=NOW)
    remember(store, "acme", ImportItem("the staging cluster is in Frankfurt"))
    assert len(other.search("acme", "staging cluster", now=NOW)) == 1
    [later] = remember(store, "acme", ImportItem("the production cluster is in Dublin"))
    assert len(other.search("acme", "cluster", now=NOW)) == 2
    store.forget("acme", memory_id=later.memory_id)
    assert [f.memory.text for f in other.search("acme", "cluster", now=NOW)] == [
        "the staging cluster is in Frankfurt"
    ]
