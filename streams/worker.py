"""The loop every worker runs: react to some event types of the log, answer on the inbox.

At-least-once: answers are flushed before the offsets are committed, so a crash re-delivers
and the worker answers again; the orchestrator drops an answer it has already applied.
A worker that must judge an event against its run's history (`fold=True`) folds every event
of its partitions, rebuilt from the log up to its committed offsets when partitions arrive.

A RequestRetried asks a worker again for a request it handles: the handler gets the original
request (its answer names that request as its cause) and the run folded up to and including
the RequestRetried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.state import RunState, evolve
from schemas.codec import DecodeError
from schemas.events import Event, RequestRetried
from streams.kafka import consumer, header, headers_for, make_codec, next_batch, producer
from streams.rebuild import fold_partitions
from streams.service import ServiceContext

__all__ = ["run_worker", "Handler", "Refused"]

Handler = Callable[[Event, "RunState | None"], Iterable[Event]]


class Refused(Exception):
    """The worker will not act on this record; it goes to the dead letters with the reason."""


def run_worker(ctx: ServiceContext, *, handles: frozenset[str], handle: Handler,
               fold: bool = False, concurrency: int = 1) -> None:
    """Consume `agentlog.events` as group `agentlog-<name>` until asked to stop.

    concurrency: how many runs' records of one batch the handler works on at once (threads;
    worth it when the handler waits: a tool's sandbox, a model's HTTP call). The answers
    are produced in the batch's order either way.
    """
    settings = ctx.settings
    codec = make_codec(settings)
    failures: list[KafkaError] = []
    states: dict[str, RunState] = {}
    partition_of: dict[str, int] = {}

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
        if fold:
            until = {tp.partition: max(tp.offset, 0) for tp in c.committed(parts, timeout=10)}
            n = fold_partitions(settings, codec, until, states, partition_of)
            ctx.log.info("rebuilt %d runs from %d events", len(states), n)
        ctx.mark_ready()

    def on_revoke(_c: Consumer, parts: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in parts}
        for run_id in [r for r, p in partition_of.items() if p in gone]:
            states.pop(run_id, None)
            partition_of.pop(run_id, None)

    out = producer(settings, on_delivery=delivered)
    source = consumer(settings, f"agentlog-{ctx.name}")
    source.subscribe([settings.events_topic], on_assign=on_assign, on_revoke=on_revoke)
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=ctx.name) if concurrency > 1 else None
    try:
        while not ctx.stopping:
            batch = next_batch(source, max_messages=200, timeout_s=0.2)
            if not batch:
                continue
            jobs: list[_Job] = []
            for msg in batch:
                if msg.error():
                    ctx.log.warning("consume error: %s", msg.error())
                    continue
                # Filter on the header: events nobody here needs are never decoded.
                kind = header(msg.headers(), "event_type")
                wanted = kind in handles or kind == "RequestRetried"
                if not (wanted or fold):
                    continue
                try:
                    event = codec.decode(msg.value())
                except DecodeError as exc:
                    ctx.dead_letter(out, msg, f"undecodable: {exc}")
                    continue
                before = states.get(event.run_id)
                asked, judged_by = event, before
                if isinstance(event.payload, RequestRetried):
                    wanted = event.payload.request_type in handles
                    try:
                        asked = Event.model_validate_json(event.payload.request_json) if wanted else event
                    except ValueError as exc:
                        ctx.dead_letter(out, msg, f"retried request unreadable: {exc}")
                        wanted = False
                    if wanted:
                        judged_by = evolve(before, event) if before is not None else None
                        ctx.log.info("%s asked again (attempt %d) for %s", asked.event_type,
                                     event.payload.attempt, event.run_id)
                if wanted:
                    jobs.append(_Job(msg, asked, judged_by))
                if fold:
                    state = evolve(before, event)
                    if state.terminal:
                        states.pop(event.run_id, None)
                        partition_of.pop(event.run_id, None)
                    else:
                        states[event.run_id] = state
                        partition_of[event.run_id] = msg.partition()
            for job in _decide(jobs, handle, pool):
                if isinstance(job.result, Refused):
                    ctx.dead_letter(out, job.msg, f"refused: {job.result}")
                elif isinstance(job.result, Exception):
                    ctx.log.error("handler failed on %s seq %s", job.asked.run_id, job.asked.seq,
                                  exc_info=job.result)
                    ctx.dead_letter(out, job.msg, f"handler failed: {job.result!r}")
                else:
                    for a in job.result or ():
                        out.produce(settings.inbox_topic, key=a.run_id, value=codec.encode(a),
                                    headers=headers_for(a))
                out.poll(0)
            if out.flush(30) or failures:
                raise KafkaException(failures[0] if failures else "answers not delivered in 30 s")
            # The answers are delivered: committing now, in the background, is safe. A commit
            # lost with a crash re-delivers, and the orchestrator drops what it already applied.
            source.commit(asynchronous=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        source.close()
        out.flush(10)
        ctx.close()


@dataclass
class _Job:
    msg: Message
    asked: Event
    judged_by: RunState | None
    result: list[Event] | Exception | None = None


def _decide(jobs: list[_Job], handle: Handler, pool: ThreadPoolExecutor | None) -> list[_Job]:
    """Run the handler on every job; a run's jobs in order, different runs side by side."""
    def run_all(mine: list[_Job]) -> None:
        for job in mine:
            try:
                job.result = list(handle(job.asked, job.judged_by))
            except Exception as exc:  # one bad record must not stop the worker
                job.result = exc

    by_run: dict[str, list[_Job]] = {}
    for job in jobs:
        by_run.setdefault(job.asked.run_id, []).append(job)
    if pool is None or len(by_run) < 2:
        run_all(jobs)
    else:
        for done in [pool.submit(run_all, mine) for mine in by_run.values()]:
            done.result()
    return jobs
