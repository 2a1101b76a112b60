"""The runs a folding processor holds in memory: the live ones, and nothing of the others but a
digest (the orchestrator's `FinishedRuns`).

`restore` reads the processor's snapshot topic and folds only the events after its checkpoint
(plus, for a snapshot that cannot be trusted, that run's own events); `put` takes each folded
state; `checkpoint` gives the records that bring the snapshot topic up to date: snapshots of
the runs that changed, tombstones of the runs that ended, pages of finished runs, and the
checkpoint itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from processors.state import FoldError, RunState, evolve
from schemas.codec import EventCodec
from streams.edge import Intake, Poison, read_partitions
from streams.finished import FinishedRuns
from streams.settings import Settings
from streams.snapshots import (
    Record,
    checkpoint_record,
    page_records,
    read_stored,
    run_record,
    snapshot_codec,
    tombstone,
)

__all__ = ["LiveRuns", "Restored"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """What a restore did, for the logs and the benchmark."""

    runs: int
    snapshots: int
    tail_events: int
    rebuilt: tuple[str, ...]
    """Runs whose snapshot was not trusted and were folded from their own events."""
    from_start: tuple[int, ...]
    """Partitions restored from the beginning of the log (no usable checkpoint)."""
    seconds: float


class LiveRuns:
    """service: whose snapshot topic this is. remember_finished: keep the digests of ended runs
    (the orchestrator, which must recognise their late records)."""

    def __init__(self, settings: Settings, service: str, *, events: EventCodec, intake: Intake,
                 remember_finished: bool) -> None:
        self.settings = settings
        self.service = service
        self.events = events
        self.snapshots = snapshot_codec(settings, service)
        self.intake = intake.rebuilding()
        self.remember_finished = remember_finished
        self.states: dict[str, RunState] = {}
        self.partition_of: dict[str, int] = {}
        self.first_offset: dict[str, int] = {}
        self.finished: dict[int, FinishedRuns] = {}
        self.covers: dict[int, int] = {}
        """Per partition, the offset of the checkpoint restored from."""
        self.covered: dict[str, int] = {}
        """Per run, events below this offset are in its snapshot already (after a restore)."""
        self.read_to: dict[int, int] = {}
        """Per partition, the offset after the last record the restore read (or its checkpoint's)."""
        self._dirty: set[str] = set()
        self._on_topic: dict[int, set[str]] = {}
        self._last_checkpoint = time.monotonic()
        self._folded = 0

    # ---- in memory ------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunState | None:
        return self.states.get(run_id)

    def ended(self, run_id: str, partition: int) -> bool:
        """True when `run_id` (of `partition`) ended and left memory (the orchestrator's knowledge)."""
        return run_id in self.finished.get(partition, ())

    def put(self, state: RunState, partition: int, *, offset: int | None = None) -> None:
        """Keep `state` (its run's latest); a run that ended leaves memory."""
        run_id = state.run_id
        self._folded += 1
        if state.terminal:
            self._forget(run_id)
            if self.remember_finished:
                self.finished.setdefault(partition, FinishedRuns()).add(run_id)
            return
        self.states[run_id] = state
        self.partition_of[run_id] = partition
        self._dirty.add(run_id)
        if offset is not None and state.seq == 1:
            self.first_offset[run_id] = offset

    def drop(self, partitions: set[int]) -> None:
        """Forget the runs of partitions this process no longer owns."""
        for run_id in [r for r, p in self.partition_of.items() if p in partitions]:
            self._forget(run_id)
        for p in partitions:
            self.finished.pop(p, None)
            self.covers.pop(p, None)
            self.read_to.pop(p, None)
            self._on_topic.pop(p, None)

    def clear(self) -> None:
        for table in (self.states, self.partition_of, self.first_offset, self.finished, self.covers,
                      self.covered, self.read_to, self._on_topic):
            table.clear()
        self._dirty.clear()

    def _forget(self, run_id: str) -> None:
        self.states.pop(run_id, None)
        self.partition_of.pop(run_id, None)
        self.first_offset.pop(run_id, None)
        self.covered.pop(run_id, None)
        self._dirty.discard(run_id)

    # ---- restore --------------------------------------------------------------------------------

    def restore(self, partitions: list[int], *, stops: dict[int, int] | None = None) -> Restored:
        """Forget everything, then restore `partitions` from the snapshot topic and the events
        after it, up to `stops` (exclusive; default: the end of what is committed)."""
        began = time.monotonic()
        self.clear()
        snapshots = tail = 0
        rebuilt: list[str] = []
        from_start: list[int] = []
        for p in partitions:
            stored = read_stored(self.settings, self.service, p, snapshots=self.snapshots, events=self.events)
            self._on_topic[p] = set(stored.keys)
            finished = self.finished.setdefault(p, FinishedRuns())
            if stored.covers is None or stored.unreadable:
                # No checkpoint to trust: the whole partition, as before snapshots existed.
                if stored.unreadable:
                    log.error("%s: snapshots of partition %d cannot be read (%s): restoring it from the "
                              "start of the log", self.service, p, "; ".join(stored.unreadable))
                from_start.append(p)
                runs: dict[str, RunState] = {}
                covers, run_covers, broken = 0, {}, {}
            else:
                finished.load(stored.pages)
                runs, covers = stored.runs, stored.covers
                run_covers, broken = stored.run_covers, stored.broken
                self.first_offset.update(stored.first_offset)
                snapshots += len(runs)
                rebuilt += list(broken)
            self.covers[p] = self.read_to[p] = covers
            start = min([covers, *broken.values()])
            stop = {p: stops[p]} if stops is not None and p in stops else None
            changed: set[str] = set()
            for msg in read_partitions(self.settings, self.settings.events_topic, {p: start}, stops=stop,
                                       timeout_s=30):
                x = msg.offset() or 0
                self.read_to[p] = max(self.read_to[p], x + 1)
                key = (msg.key() or b"").decode(errors="replace")
                if key in broken:
                    if x < broken[key]:
                        continue
                elif x < covers or x < run_covers.get(key, -1):
                    continue
                try:
                    event = self.intake.decode(msg)
                    state = evolve(runs.get(event.run_id), event)
                except Poison as exc:
                    self.intake.park(msg, str(exc))
                    continue
                except FoldError as exc:
                    self.intake.fold_error(msg, exc)
                    continue
                tail += 1
                changed.add(event.run_id)
                if state.terminal:
                    runs.pop(event.run_id, None)
                    self.first_offset.pop(event.run_id, None)
                    if self.remember_finished:
                        finished.add(event.run_id)
                else:
                    runs[event.run_id] = state
                    if state.seq == 1:
                        self.first_offset[event.run_id] = x
            for run_id, state in runs.items():
                self.states[run_id] = state
                self.partition_of[run_id] = p
                if run_id in run_covers and run_covers[run_id] > covers:
                    self.covered[run_id] = run_covers[run_id]
            # Runs the tail changed (and rebuilt ones) get new snapshots at the next checkpoint:
            # the next restore starts after the tail and must not find their older ones.
            self._dirty |= {r for r in runs if r in changed or r in broken or p in from_start}
        self._last_checkpoint = time.monotonic()
        self._folded = 0
        return Restored(len(self.states), snapshots, tail, tuple(rebuilt), tuple(from_start),
                        time.monotonic() - began)

    # ---- checkpoints ----------------------------------------------------------------------------

    def due(self) -> bool:
        """Time for a checkpoint: something changed, and the interval passed or many events did."""
        if not self._folded:
            return False
        return (time.monotonic() - self._last_checkpoint >= self.settings.snapshot_interval_s
                or self._folded >= self.settings.snapshot_max_events)

    def checkpoint(self, covers: dict[int, int], *, at: datetime) -> list[Record]:
        """The records that make the snapshot topic hold the state as of `covers` (per partition,
        the offset before which every event is folded in); to produce before what they cover
        is committed."""
        records: list[Record] = []
        for p, offset in covers.items():
            live = {r for r in self._dirty if self.partition_of.get(r) == p}
            records.extend(run_record(self.snapshots, self.events, service=self.service, partition=p,
                                      covers=offset, at=at, state=self.states[run_id],
                                      first_offset=self.first_offset.get(run_id))
                           for run_id in sorted(live))
            on_topic = self._on_topic.setdefault(p, set())
            gone = sorted(r for r in on_topic if r not in self.states)
            records.extend(tombstone(run_id, p) for run_id in gone)
            on_topic.intersection_update(self.states)
            on_topic.update(live)
            finished = self.finished.get(p)
            if finished is not None:
                records += page_records(self.snapshots, service=self.service, partition=p, covers=offset,
                                        at=at, pages=sorted(finished.unwritten().items()))
            records.append(checkpoint_record(self.snapshots, service=self.service, partition=p,
                                             covers=offset, at=at,
                                             live_runs=sum(1 for q in self.partition_of.values() if q == p)))
            self._dirty -= live
        self._last_checkpoint = time.monotonic()
        self._folded = 0
        return records
