"""Reading one run without scanning its partition.

What ClickHouse holds of the run (`agent_events` is ordered by tenant, run and seq: a key-range
read), then the log's tail after the offset up to which ClickHouse holds the partition. The
offsets are read before the rows, and the tail is read up to the end of what is committed when
the read begins, so every event committed before a read is in it (read-your-writes), however
far the sink lags: the tail is then simply longer. A store that cannot answer makes the read
scan the run's partition from its start (slower, still exact) until it answers again.

Whatever is returned folds: a record under the run's key that is no readable event, or that its
run cannot take, is skipped (the workers dead-letter it).
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from processors.state import FoldError, RunState, evolve
from schemas.codec import EventCodec
from schemas.events import Event
from streams.edge import READER_CONFIG, Intake, Poison, read_partitions
from streams.kafka import consumer
from streams.partitioning import partition_for
from streams.query_api import QueryError, stored_run
from streams.settings import Settings

__all__ = ["RunReader", "RunView", "reader_for", "close_readers"]

log = logging.getLogger(__name__)


@dataclass
class RunView:
    """A run as read: its events in seq order, and where its partition's tail goes on."""

    events: list[Event]
    partition: int
    next_offset: int
    """The partition's offset after the last record read (the start of the next tail read)."""
    state: RunState | None = None

    @property
    def tenant_id(self) -> str | None:
        return self.events[0].tenant_id if self.events else None


class RunReader:
    """Run reads for one process: a pool of Kafka readers, reused across reads."""

    def __init__(self, settings: Settings, codec: EventCodec) -> None:
        self.settings = settings
        self.codec = codec
        self.intake = Intake(settings, codec, service="reader", dead_letters=None)
        self._pool: queue.SimpleQueue[Consumer] = queue.SimpleQueue()

    def read(self, run_id: str, *, tenant_id: str | None = None) -> RunView:
        """The run's events committed so far (none for a run of another tenant than `tenant_id`)."""
        try:
            stored = stored_run(self.settings, run_id, tenant_id=tenant_id, sink_running=True)
            rows, through = stored.rows, stored.through
        except (QueryError, OSError) as exc:
            log.warning("the store did not answer (%s): reading run %s from its partition's start",
                        exc, run_id)
            rows, through = [], None
        view = RunView([], int(rows[0]["source_partition"]) if rows else
                       partition_for(run_id, self.settings.partitions), 0)
        for row in rows:
            try:
                self._take(view, _event(row), tenant_id)
            except (ValueError, FoldError) as exc:  # a stored row of no possible run
                log.warning("skipped a stored event of run %s: %s", run_id, exc)
        view.next_offset = through.get(view.partition, -1) + 1 if through is not None else 0
        return self.tail(view, run_id, tenant_id=tenant_id)

    def tail(self, view: RunView, run_id: str, *, tenant_id: str | None = None) -> RunView:
        """`view` with the run's events committed after `view.next_offset`."""
        key = run_id.encode()
        reader = self._reader()
        try:
            for msg in read_partitions(self.settings, self.settings.events_topic,
                                       {view.partition: view.next_offset}, reader=reader, tail=True):
                view.next_offset = (msg.offset() or 0) + 1
                if msg.key() != key:
                    continue
                try:
                    event = self.intake.decode(msg)
                except Poison as exc:
                    self.intake.park(msg, str(exc))
                    continue
                try:
                    self._take(view, event, tenant_id)
                except FoldError as exc:
                    self.intake.fold_error(msg, exc)
        finally:
            self._pool.put(reader)
        return view

    def follow(self, run_id: str, *, timeout_s: float, tenant_id: str | None = None,
               poll_s: float = 0.2) -> Iterator[Event]:
        """The run's events so far, then each new one as it is committed, for `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        view = self.read(run_id, tenant_id=tenant_id)
        sent = 0
        while True:
            yield from view.events[sent:]
            sent = len(view.events)
            if time.monotonic() >= deadline or (view.state is not None and view.state.terminal):
                return
            time.sleep(poll_s)
            self.tail(view, run_id, tenant_id=tenant_id)

    def _take(self, view: RunView, event: Event, tenant_id: str | None) -> None:
        if tenant_id is not None and event.tenant_id != tenant_id:
            return
        if view.state is not None and event.seq <= view.state.seq:
            return  # held by the store and met again in the tail
        view.state = evolve(view.state, event)
        view.events.append(event)

    def _reader(self) -> Consumer:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return consumer(self.settings, None, **READER_CONFIG)

    def close(self) -> None:
        """Close the pooled Kafka readers (a read after this makes new ones)."""
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


def _event(row: dict[str, Any]) -> Event:
    return Event.model_validate({
        "run_id": row["run_id"], "seq": row["seq"], "event_id": row["event_id"],
        "causation_id": row["causation_id"], "tenant_id": row["tenant_id"], "event_type": row["event_type"],
        "actor": row["actor"], "event_time": row["event_time"], "payload": json.loads(row["payload"]),
    })


_READERS: dict[int, RunReader] = {}


def reader_for(settings: Settings, codec: EventCodec) -> RunReader:
    """The process's reader for these settings (its Kafka readers are kept between reads)."""
    reader = _READERS.get(id(settings))
    if reader is None or reader.settings is not settings:
        reader = _READERS[id(settings)] = RunReader(settings, codec)
    return reader


def close_readers(home: Path) -> None:
    """Close the readers of every settings of installation `home`, whose cluster is going away
    (their clients would otherwise keep trying to reach it for as long as this process lives)."""
    for key, reader in list(_READERS.items()):
        if reader.settings.home == home:
            reader.close()
            del _READERS[key]
