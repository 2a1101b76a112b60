"""The loop every worker runs: react to some event types of the log, answer on the inbox.

At-least-once: answers are flushed before the offsets are committed, so a crash re-delivers
and the worker answers again; the orchestrator drops an answer it has already applied.
A worker that must judge an event against its run's history (`fold=True`) folds every event
of its partitions and holds its live runs only: when partitions arrive it restores them from its
snapshot topic and the events after it, and every few seconds, once its answers are delivered
and before it commits, it writes the snapshots of the runs that changed.

A RequestRetried asks a worker again for a request it handles: the handler gets the original
request (its answer names that request as its cause) and the run folded up to and including
the RequestRetried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from processors.spans import answer_span
from processors.state import FoldError, RunState, evolve
from schemas.events import Event, RequestRetried
from streams import telemetry
from streams.edge import Intake, LogUnavailable, Outbox, Poison, commit, lag, next_batch, serve
from streams.kafka import consumer, header, headers_for, make_codec, position, producer
from streams.live_runs import LiveRuns
from streams.metrics_export import hop
from streams.service import ServiceContext, utcnow

__all__ = ["run_worker", "Handler", "Refused"]

Handler = Callable[[Event, "RunState | None"], Iterable[Event]]


class Refused(Exception):
    """The worker will not act on this record; it goes to the dead letters with the reason."""


@dataclass
class _Job:
    msg: Message
    asked: Event
    judged_by: RunState | None
    result: list[Event] | Exception | None = None
    started: datetime | None = None
    ended: datetime | None = None


class _Worker:
    def __init__(self, ctx: ServiceContext, *, handles: frozenset[str], handle: Handler, fold: bool,
                 concurrency: int) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.handles = handles
        self.handle = handle
        self.fold = fold
        self.codec = make_codec(self.settings)
        self.out = Outbox(producer(self.settings))
        self.intake = Intake(self.settings, self.codec, service=ctx.name, dead_letters=self.out)
        self.live = LiveRuns(self.settings, ctx.name, events=self.codec, intake=self.intake,
                             remember_finished=False)
        self.source = consumer(self.settings, f"agentlog-{ctx.name}")
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix=ctx.name) if concurrency > 1 else None
        self.needs_reset = False

    def on_assign(self, _c: Consumer, _parts: list[TopicPartition]) -> None:
        # Rebuilt by the main loop, where a broker that does not answer can be waited out.
        self.needs_reset = True

    def on_revoke(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        self.live.drop({tp.partition for tp in parts})

    def reset(self) -> None:
        """Restore the assigned partitions up to the committed offsets and go on from there."""
        parts = self.source.assignment()
        try:
            committed = {tp.partition: max(tp.offset, 0) for tp in self.source.committed(parts, timeout=10)}
        except KafkaException as exc:
            raise LogUnavailable(f"committed offsets not read: {exc.args[0]}") from None
        if self.fold:
            done = self.live.restore(sorted(committed), stops=committed)
            self.ctx.log.info("partitions %s: %d live runs from %d snapshots and %d events after them in "
                              "%.2f s", sorted(committed), done.runs, done.snapshots, done.tail_events,
                              done.seconds)
        for p, offset in committed.items():
            # Past a checkpoint written after answers were delivered but before their commit.
            resume = max(offset, self.live.covers.get(p, 0))
            self.source.seek(TopicPartition(self.settings.events_topic, p,
                                            resume if resume > 0 else OFFSET_BEGINNING))
        self.needs_reset = False
        self.ctx.mark_ready()

    def run(self) -> None:
        self.source.subscribe([self.settings.events_topic], on_assign=self.on_assign,
                              on_revoke=self.on_revoke)
        try:
            # Nothing is committed past what was delivered: after a failure, go on from the commit.
            serve(self.ctx, self.step, recover=lambda _exc: setattr(self, "needs_reset", True))
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.source.close()
            self.out.producer.flush(10)
            self.ctx.close()

    def step(self) -> None:
        batch = next_batch(self.source, max_messages=200, timeout_s=0.2)
        if self.needs_reset:
            self.reset()  # the batch read before it is read again from the committed offsets
            return
        self.ctx.lag = lag(self.source, service=self.ctx.name)
        if not batch:
            self.checkpoint()  # what changed last gets its snapshot while the worker idles too
            self.ctx.progressed()
            return
        jobs = [job for msg in batch if (job := self.take(msg)) is not None]
        for job in _decide(jobs, self.handle, self.pool, beat=self.ctx.beat):
            if isinstance(job.result, Refused):
                self.intake.park(job.msg, f"refused: {job.result}")
            elif isinstance(job.result, Exception):
                self.ctx.log.error("handler failed on %s seq %s", job.asked.run_id, job.asked.seq,
                                   exc_info=job.result)
                self.intake.park(job.msg, f"handler failed: {job.result!r}")
            else:
                trace = header(job.msg.headers(), "traceparent")
                for a in job.result or ():
                    hop(self.ctx.name, job.asked.event_type, job.asked.event_time, a.event_time)
                    self.out.produce(self.settings.inbox_topic, key=a.run_id, value=self.codec.encode(a),
                                     headers=headers_for(a, traceparent=trace))
                    self.trace(job, a, trace)
        self.out.flush(30)
        self.checkpoint()
        # The answers are delivered: committing now is safe. A commit that does not happen
        # re-delivers, and the orchestrator drops what it already applied.
        commit(self.source)
        self.ctx.progressed()
        self.ctx.parked = sum(self.intake.parked.values())

    def trace(self, job: _Job, answer: Event, traceparent: str | None) -> None:
        """The span of the work behind `answer`, in the run's trace (when spans are on)."""
        if not telemetry.enabled() or job.started is None or job.ended is None:
            return
        span = answer_span(job.asked, answer, started=job.started, ended=job.ended,
                           tool_io=telemetry.tool_io_opted_in())
        if span is not None:
            telemetry.emit(span, traceparent)

    def checkpoint(self) -> None:
        """The snapshots of what changed, when one is due. Called once the answers are delivered,
        so a snapshot never covers a request that was not answered."""
        if not (self.fold and self.live.due()):
            return
        covers = {tp.partition: tp.offset for tp in self.source.position(self.source.assignment())
                  if tp.offset >= 0}
        for key, value, headers, partition in self.live.checkpoint(covers, at=utcnow()):
            self.out.produce(self.settings.snapshots_topic(self.ctx.name), key=key, value=value,
                             headers=headers, partition=partition)
        self.out.flush(30)

    def take(self, msg: Message) -> _Job | None:
        """The job `msg` asks of this worker (None if none), after folding it when asked to."""
        if self.intake.consume_error(msg):
            return None
        # Filter on the header: events nobody here needs are never decoded.
        kind = header(msg.headers(), "event_type")
        wanted = kind in self.handles or kind == "RequestRetried"
        if not (wanted or self.fold):
            return None
        try:
            event = self.intake.decode(msg)
        except Poison as exc:
            self.intake.park(msg, str(exc))
            return None
        partition, offset = position(msg)
        if offset < self.live.covered.get(event.run_id, -1):
            return None  # in the run's snapshot already, and answered before it was written
        before = self.live.get(event.run_id)
        asked, judged_by, state = event, before, None
        if self.fold:
            try:
                state = evolve(before, event)
            except FoldError as exc:
                self.intake.fold_error(msg, exc)
                return None
            self.live.put(state, partition, offset=offset)
        if isinstance(event.payload, RequestRetried):
            wanted = event.payload.request_type in self.handles
            if wanted:
                try:
                    asked = Event.model_validate_json(event.payload.request_json)
                except ValueError as exc:
                    self.intake.park(msg, f"retried request unreadable: {exc}")
                    return None
                judged_by = state
                self.ctx.log.info("%s asked again (attempt %d) for %s", asked.event_type,
                                  event.payload.attempt, event.run_id)
        return _Job(msg, asked, judged_by) if wanted else None


def run_worker(ctx: ServiceContext, *, handles: frozenset[str], handle: Handler,
               fold: bool = False, concurrency: int = 1) -> None:
    """Consume `agentlog.events` as group `agentlog-<name>` until asked to stop.

    concurrency: how many runs' records of one batch the handler works on at once (threads;
    worth it when the handler waits: a tool's sandbox, a model's HTTP call). The answers
    are produced in the batch's order either way.
    """
    _Worker(ctx, handles=handles, handle=handle, fold=fold, concurrency=concurrency).run()


def _decide(jobs: list[_Job], handle: Handler, pool: ThreadPoolExecutor | None, *,
            beat: Callable[[], None]) -> list[_Job]:
    """Run the handler on every job; a run's jobs in order, different runs side by side (the
    heartbeat goes on while they work: a slow tool is not a stalled worker)."""
    def run_all(mine: list[_Job]) -> None:
        for job in mine:
            job.started = utcnow()
            try:
                job.result = list(handle(job.asked, job.judged_by))
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the worker (logged below)
                job.result = exc
            job.ended = utcnow()

    by_run: dict[str, list[_Job]] = {}
    for job in jobs:
        by_run.setdefault(job.asked.run_id, []).append(job)
    if pool is None:
        run_all(jobs)
        return jobs
    pending = {pool.submit(run_all, mine) for mine in by_run.values()}
    while pending:
        _done, pending = wait(pending, timeout=1.0)
        beat()
    return jobs
