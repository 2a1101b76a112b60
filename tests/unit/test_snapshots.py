"""Snapshots of run state: a restored state is the folded one, a snapshot that cannot be its
run's is refused, ended runs are remembered as digests, and a checkpoint writes what changed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from processors.replay.dataset import parse_line
from processors.snapshot import SnapshotMismatch, from_snapshot, to_snapshot
from processors.state import evolve, fold
from schemas.codec import EventCodec
from schemas.events import RunCancelled
from schemas.snapshot_codec import SnapshotCodec
from schemas.snapshots import Snapshot
from streams.edge import Intake
from streams.finished import PAGE_SIZE, FinishedRuns
from streams.live_runs import LiveRuns
from streams.settings import Settings
from tests.factories import T0, a_run, envelope

GOLDEN = sorted((Path(__file__).parents[1] / "golden" / "runs").glob("*.jsonl"))
CODEC = EventCodec()


def _golden_runs() -> list[list]:
    return [list(parse_line(p.read_text().strip()).events) for p in GOLDEN]


@pytest.mark.parametrize("events", [a_run(), *_golden_runs()], ids=["a_run", *[p.stem for p in GOLDEN]])
def test_every_state_of_a_run_survives_a_snapshot_round_trip(events):
    wire = SnapshotCodec()
    state = None
    for event in events:
        state = evolve(state, event)
        if state.terminal:
            break
        record = Snapshot(service="orchestrator", partition=0, covers=7, written_at=T0,
                          body=to_snapshot(state, CODEC))
        back = wire.decode(wire.encode(record))
        assert back == record
        assert from_snapshot(back.body, CODEC, run_id=state.run_id) == state


def test_a_snapshot_that_cannot_be_its_runs_is_refused():
    state = fold(a_run())
    snap = to_snapshot(state, CODEC)
    with pytest.raises(SnapshotMismatch, match="under the key of run other"):
        from_snapshot(snap, CODEC, run_id="other")
    stale = snap.model_copy(update={"seq": snap.seq + 3})
    with pytest.raises(SnapshotMismatch, match="does not end with its last event"):
        from_snapshot(stale, CODEC, run_id=state.run_id)


def test_finished_runs_are_known_by_digest_and_their_pages_restore():
    finished = FinishedRuns()
    ids = [f"run-{i:06d}" for i in range(PAGE_SIZE * 2 + 17)]
    pages: dict[int, bytes] = {}
    for i, run_id in enumerate(ids):
        finished.add(run_id)
        if i % 500 == 0:  # checkpoints now and then write what changed
            pages.update(finished.unwritten())
    pages.update(finished.unwritten())
    assert sorted(pages) == [0, 1, 2] and len(pages[0]) == PAGE_SIZE * 16
    restored = FinishedRuns()
    restored.load(pages)
    assert all(r in restored for r in ids)
    assert not any(f"never-{i}" in restored for i in range(5000))


def _live() -> LiveRuns:
    settings = Settings(partitions=3)
    return LiveRuns(settings, "orchestrator", events=CODEC,
                    intake=Intake(settings, CODEC, service="orchestrator", dead_letters=None),
                    remember_finished=True)


def _kinds(records) -> list[tuple[str, str]]:
    wire = SnapshotCodec()
    return [(key, "tombstone" if value is None else type(wire.decode(value).body).__name__)
            for key, value, _h, _p in records]


def test_a_checkpoint_writes_what_changed_and_forgets_what_ended():
    live = _live()
    events = a_run("run-a")
    live.put(fold(events[:1]), 1, offset=100)  # where its events begin
    state = fold(events[:3])
    live.put(state, 1, offset=102)
    first = live.checkpoint({1: 120}, at=T0)
    assert _kinds(first) == [("run-a", "RunSnapshot"), ("\x00agentlog/checkpoint", "Checkpoint")]
    assert dict(first[0][2])["first_offset"] == b"100"
    # Nothing changed: only the checkpoint moves on.
    assert _kinds(live.checkpoint({1: 130}, at=T0)) == [("\x00agentlog/checkpoint", "Checkpoint")]
    ended = evolve(state, envelope(RunCancelled(reason="stop"), run_id="run-a", seq=4,
                                   at=T0 + timedelta(seconds=9)))
    live.put(ended, 1)
    assert live.get("run-a") is None and live.ended("run-a", 1) and not live.ended("run-a", 0)
    assert _kinds(live.checkpoint({1: 140}, at=T0)) == [
        ("run-a", "tombstone"), ("\x00agentlog/finished/0", "FinishedRunsPage"),
        ("\x00agentlog/checkpoint", "Checkpoint")]


def test_a_run_that_never_existed_is_not_taken_for_an_ended_one():
    live = _live()
    live.put(fold(a_run("run-b")), 2)
    assert not live.ended("run-b", 2) and not live.ended("run-never", 2)

