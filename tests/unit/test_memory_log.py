"""The memory log's records: mirrors of their .avsc files, encoded and decoded, released records
still readable, and the fold that rebuilds a tenant's memory from its changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from processors.memory import ledger
from processors.memory.records import MemoryRecord
from schemas.codec import DecodeError, expanded_schema
from schemas.memory_log import MEMORY_CHANGE_TYPES, KeptMemory, MemoryChange, MemoryForgotten
from schemas.memory_log_codec import MemoryChangeCodec
from tests.unit.test_schema_mirror import _avsc_fields, _mirror_fields

T = datetime(2026, 12, 1, 12, tzinfo=UTC)
GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.mark.parametrize("model", [*MEMORY_CHANGE_TYPES.values(), KeptMemory], ids=lambda m: m.__name__)
def test_mirror_matches_avsc(model):
    assert _mirror_fields(model) == _avsc_fields(model.__name__)


def test_envelope_matches_avsc_and_union_order():
    avsc = _avsc_fields("MemoryChange")
    body = next(f for f in avsc if f["name"] == "body")
    assert body["type"] == [f"agentlog.{n}" for n in MEMORY_CHANGE_TYPES]
    assert [f for f in _mirror_fields(MemoryChange) if f["name"] != "body"] == [
        f for f in avsc if f["name"] != "body"]


def memory(ident: str, *, subject: str = "", text: str = "a fact", expires: datetime = T + timedelta(days=1),
           tenant: str = "acme") -> MemoryRecord:
    return MemoryRecord(tenant_id=tenant, memory_id=ident, text=text, subject=subject, created_at=T,
                        expires_at=expires, metadata={"k": "v"})


def change_log() -> list[MemoryChange]:
    ids = iter(f"c{i}" for i in range(100))
    at = {"actor": "cli:ops", "at": T}
    return [
        ledger.opted_in("acme", default_ttl_s=3600, change_id=next(ids), **at),
        ledger.kept("acme", [memory("a"), memory("b", subject="refunds"), memory("c", subject="refunds")],
                    change_id=next(ids), **at),
        ledger.opted_in("globex", default_ttl_s=60, change_id=next(ids), **at),
        ledger.kept("globex", [memory("g", tenant="globex")], change_id=next(ids), **at),
        ledger.forgotten("acme", scope="memory", memory_id="a", memory_ids=["a"], change_id=next(ids), **at),
        ledger.kept("acme", [memory("d", subject="refunds"), memory("old", expires=T + timedelta(seconds=1))],
                    change_id=next(ids), **at),
        ledger.forgotten("acme", scope="subject", subject="refunds", memory_ids=["b", "c", "d"],
                         change_id=next(ids), **at),
        ledger.kept("acme", [memory("e", text="stored after the forget", subject="refunds")],
                    change_id=next(ids), **at),
        ledger.forgotten("globex", scope="opt_out", memory_ids=["g"], change_id=next(ids), **at),
    ]


def test_every_change_round_trips_through_the_codec():
    codec = MemoryChangeCodec()
    for change in change_log():
        assert codec.decode(codec.encode(change)) == change
    with pytest.raises(DecodeError):
        codec.decode(b"\xc3\x01 not a memory change")


def test_released_memory_changes_stay_readable():
    files = sorted(GOLDEN.glob("memory-v*.avro"))
    assert files, "no golden memory records: run python -m tests.golden.release"
    for path in files:
        with path.open("rb") as f:
            records = list(fastavro.reader(f, reader_schema=expanded_schema("MemoryChange"),
                                           return_record_name=True))
        kinds = {r["body"][0].removeprefix("agentlog.") for r in records}
        assert kinds == set(MEMORY_CHANGE_TYPES)
        for r in records:
            body = MEMORY_CHANGE_TYPES[r["body"][0].removeprefix("agentlog.")].model_validate(r["body"][1])
            MemoryChange.model_validate({**r, "body": body})


def test_the_fold_keeps_what_was_stored_and_not_forgotten():
    tenants = ledger.replay(change_log())
    acme, globex = tenants["acme"], tenants["globex"]
    # "a" forgotten by id; b, c, d by subject; "e" came after the forget and stays.
    assert sorted(acme.memories) == ["e", "old"]
    assert [m.memory_id for m in acme.live(T + timedelta(seconds=2))] == ["e"]  # "old" expired
    assert acme.default_ttl_s == 3600
    assert acme.memories["e"].metadata == {"k": "v"} and acme.memories["e"].subject == "refunds"
    assert globex.default_ttl_s is None and globex.memories == {}  # opted out: nothing, memory off


def test_the_fold_of_one_tenant_ignores_the_others():
    assert list(ledger.replay(change_log(), tenant_id="globex")) == ["globex"]


def test_a_forget_records_what_whom_and_when():
    change = ledger.forgotten("acme", scope="tenant", memory_ids=["x", "y"], actor="key:k1 (ops)",
                              change_id="c", at=T)
    assert change.body == MemoryForgotten(scope="tenant", memory_id=None, subject=None, memory_ids=["x", "y"])
    assert (change.actor, change.at, change.kind) == ("key:k1 (ops)", T, "MemoryForgotten")
