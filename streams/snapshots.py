"""Snapshot topics: what a folding processor writes at a checkpoint and reads back on restart.

Each folding processor (the orchestrator, the executor, the responder) has a compacted topic
`<prefix>.snapshots.<service>`, partitioned like the events topic. Per partition it holds the
latest `RunSnapshot` of each live run (key: the run id; header `first_offset`: where the run's
events begin, to rebuild a snapshot that cannot be trusted), a `Checkpoint` (every snapshot
covers the events before its offset), and, for the orchestrator, the pages of runs that ended.
A run that ends gets a tombstone, so compaction forgets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Message

from processors.snapshot import SnapshotMismatch, from_snapshot, to_snapshot
from processors.state import RunState
from schemas.codec import DecodeError, EventCodec
from schemas.snapshot_codec import SnapshotCodec
from schemas.snapshots import Checkpoint, FinishedRunsPage, RunSnapshot, Snapshot
from streams.edge import read_partitions
from streams.kafka import ConfluentRegistry, HeaderList, header_pairs
from streams.settings import Settings

__all__ = ["SPECIAL", "CHECKPOINT_KEY", "Stored", "Record", "snapshot_codec", "read_stored", "run_record",
           "tombstone", "checkpoint_record", "page_records"]

SPECIAL = "\x00agentlog/"
"""Prefix of the keys that are not run ids (a run id never begins with a NUL byte)."""
CHECKPOINT_KEY = SPECIAL + "checkpoint"
_PAGE = SPECIAL + "finished/"
_FIRST_OFFSET = "first_offset"

Record = tuple[str, bytes | None, HeaderList, int]
"""(key, value or None for a tombstone, headers, partition): one record to produce."""


def snapshot_codec(settings: Settings, service: str) -> SnapshotCodec:
    topic = settings.snapshots_topic(service)
    registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
    return SnapshotCodec(registry=registry, subject=f"{topic}-value")


@dataclass
class Stored:
    """What one partition of a snapshot topic holds, read and checked."""

    covers: int | None = None
    """The checkpoint's offset; None without a readable checkpoint (restore from the start)."""
    runs: dict[str, RunState] = field(default_factory=dict)
    run_covers: dict[str, int] = field(default_factory=dict)
    """Per run, the offset its snapshot covers (at most `covers`, or past it when a worker
    stopped between its snapshots and its checkpoint)."""
    first_offset: dict[str, int] = field(default_factory=dict)
    broken: dict[str, int] = field(default_factory=dict)
    """Runs whose snapshot cannot be trusted -> where their events begin (0: not known)."""
    pages: dict[int, bytes] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    """Every run id with a snapshot on the topic (to tombstone those that ended)."""
    unreadable: list[str] = field(default_factory=list)
    """Why a checkpoint or page could not be read: the partition is restored from the start."""


def read_stored(settings: Settings, service: str, partition: int, *, snapshots: SnapshotCodec,
                events: EventCodec) -> Stored:
    """The latest record of every key of `partition`, decoded and checked."""
    latest: dict[str, Message] = {}
    for msg in read_partitions(settings, settings.snapshots_topic(service), {partition: 0}, timeout_s=30):
        key = (msg.key() or b"").decode(errors="replace")
        if msg.value() is None:
            latest.pop(key, None)
        else:
            latest[key] = msg
    stored = Stored()
    for key, msg in latest.items():
        special = key.startswith(SPECIAL)
        if not special:
            stored.keys.add(key)
        try:
            snap = snapshots.decode(msg.value() or b"")
            body = snap.body
            if special:
                if isinstance(body, Checkpoint) and key == CHECKPOINT_KEY:
                    stored.covers = snap.covers
                elif isinstance(body, FinishedRunsPage) and key == f"{_PAGE}{body.page}":
                    stored.pages[body.page] = body.run_digests
                else:
                    raise DecodeError(f"{type(body).__name__} under key {key!r}")
                continue
            if not isinstance(body, RunSnapshot):
                raise DecodeError(f"{type(body).__name__} under the run key {key!r}")
            stored.runs[key] = from_snapshot(body, events, run_id=key)
            stored.run_covers[key] = snap.covers
            first = _first_offset(msg)
            if first is not None:
                stored.first_offset[key] = first
        except (DecodeError, SnapshotMismatch) as exc:
            if special:
                stored.unreadable.append(f"{key!r}: {exc}")
            else:
                stored.broken[key] = _first_offset(msg) or 0
    return stored


def _first_offset(msg: Message) -> int | None:
    for name, value in header_pairs(msg.headers()):
        if name == _FIRST_OFFSET and value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _envelope(service: str, partition: int, covers: int, at: datetime, body: object) -> Snapshot:
    return Snapshot(service=service, partition=partition, covers=covers, written_at=at, body=body)


def run_record(codec: SnapshotCodec, events: EventCodec, *, service: str, partition: int, covers: int,
               at: datetime, state: RunState, first_offset: int | None) -> Record:
    value = codec.encode(_envelope(service, partition, covers, at, to_snapshot(state, events)))
    headers: HeaderList = [(_FIRST_OFFSET, str(first_offset).encode())] if first_offset is not None else []
    return state.run_id, value, headers, partition


def tombstone(run_id: str, partition: int) -> Record:
    return run_id, None, [], partition


def checkpoint_record(codec: SnapshotCodec, *, service: str, partition: int, covers: int, at: datetime,
                      live_runs: int) -> Record:
    return (CHECKPOINT_KEY, codec.encode(_envelope(service, partition, covers, at,
                                                   Checkpoint(live_runs=live_runs))), [], partition)


def page_records(codec: SnapshotCodec, *, service: str, partition: int, covers: int, at: datetime,
                 pages: Iterable[tuple[int, bytes]]) -> Iterator[Record]:
    for page, blob in pages:
        body = FinishedRunsPage(page=page, run_digests=blob)
        yield f"{_PAGE}{page}", codec.encode(_envelope(service, partition, covers, at, body)), [], partition
