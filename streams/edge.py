"""The one Kafka edge every consumer goes through.

- `read_partitions`: records of some partitions from given offsets up to their end, with a
  deadline (a broker that does not answer is `LogUnavailable`, never a shorter read).
- `Intake`: decode or dead-letter. Whatever a record carries (NULL, empty, garbage, another
  schema, another run's key, an event its run cannot take) becomes a dead letter with the
  reason, topic, partition and offset in headers, or, while rebuilding state, a counted skip;
  the process goes on.
- `Outbox` and `commit`: flush, check that everything was delivered, then send the commit
  (never waited on: a coordinator that is loading or moving cannot block the loop).
- `serve`: the loop every service runs on it: a client that failed for good ends the process,
  a log that does not answer is waited out, and the service goes on from its last commit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from processors.state import FoldError
from schemas.codec import DecodeError, EventCodec
from schemas.events import Event
from streams.kafka import HeaderList, Headers, consumer, header_pairs
from streams.metrics_export import DEAD_LETTERS, LAG, reason_class
from streams.service import ServiceContext
from streams.settings import Settings

__all__ = ["ClientFailed", "LogUnavailable", "Poison", "Intake", "Outbox", "read_partitions", "next_batch",
           "commit", "end_offsets", "lag", "serve", "DLQ_HEADERS", "READER_CONFIG"]

log = logging.getLogger(__name__)

DLQ_HEADERS = ("dlq.reason", "dlq.service", "dlq.topic", "dlq.partition", "dlq.offset")
"""Headers of a dead letter: why, who gave up on it, and where it came from."""

# Errors a consumer sees while the cluster is briefly unreachable or electing: waited out.
_TRANSIENT = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.NETWORK_EXCEPTION, KafkaError._RESOLVE,
})


_PAST_ANY_END = 2**62

READER_CONFIG: dict[str, Any] = {"enable.partition.eof": True, "fetch.wait.max.ms": 1}
"""A reader of partitions (not a group member): told where each partition ends, and quick to
hear that a fetch found nothing."""


class LogUnavailable(RuntimeError):
    """The log did not answer in time: a run cannot be told missing from unreadable."""


class ClientFailed(RuntimeError):
    """A Kafka client that cannot be used any more (fatal error): end the process, whose
    process manager (the watchdog, systemd, Kubernetes) starts a fresh one."""


class Poison(ValueError):
    """A record no agentlog process can use; the message says why."""


def next_batch(source: Consumer, *, max_messages: int, timeout_s: float) -> list[Message]:
    """Whatever is ready, as soon as one record is: `Consumer.consume(n, t)` would wait the
    whole timeout for n records, adding that wait to every hop of a run."""
    first = source.poll(timeout_s)
    if first is None:
        return []
    return [first, *source.consume(max_messages - 1, timeout=0)]


class Outbox:
    """A producer whose delivery failures are kept, so `flush` can say whether all arrived.

    on_delivered: called with each record the broker took (its offset known), e.g. to note
    where a run's events begin.
    """

    def __init__(self, producer: Producer, *, on_delivered: Callable[[Message], None] | None = None) -> None:
        self.producer = producer
        self.failures: list[KafkaError] = []
        self.on_delivered = on_delivered

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(err)
        elif self.on_delivered is not None:
            self.on_delivered(msg)

    def produce(self, topic: str, *, key: str | bytes | None, value: bytes | None,
                headers: Headers | None = None, partition: int | None = None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers,
                                  "on_delivery": self.delivered}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:  # the local queue is full while the broker is away: wait
                self.producer.poll(0.5)
        self.producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        """Wait until everything produced is delivered; `KafkaException` if it is not."""
        left = self.producer.flush(timeout_s)
        if left or self.failures:
            why = self.failures[0] if self.failures else f"{left} record(s) not delivered in {timeout_s:g} s"
            self.failures.clear()
            raise KafkaException(why)


class Intake:
    """Decode-or-dead-letter for one consumer.

    dead_letters: where parked records go (the orchestrator's wraps its transactional producer,
    so a dead letter commits with the offsets that skip it); None counts and logs them only,
    as a rebuild does (the live consumers park each record once).
    """

    def __init__(self, settings: Settings, codec: EventCodec, *, service: str,
                 dead_letters: Outbox | None) -> None:
        self.settings = settings
        self.codec = codec
        self.service = service
        self.dead_letters = dead_letters
        self.parked: Counter[str] = Counter()
        """Reasons (their first words) of the records parked or skipped, for status and tests."""

    def rebuilding(self) -> Intake:
        """The same intake for a rebuild: records are counted and skipped, not parked again."""
        twin = Intake(self.settings, self.codec, service=self.service, dead_letters=None)
        twin.parked = self.parked
        return twin

    def decode(self, msg: Message, *, keyed: bool = True) -> Event:
        """The event a record carries; `Poison` when it carries none. `keyed`: the record's key
        must be its run id (so it sits in its run's partition)."""
        value = msg.value()
        if value is None:
            raise Poison("NULL value (a tombstone)")
        if not value:
            raise Poison("empty value")
        try:
            event = self.codec.decode(value)
        except DecodeError as exc:
            raise Poison(f"undecodable: {exc}") from None
        if not event.run_id or event.run_id.startswith("\x00"):
            raise Poison(f"run id {event.run_id!r} is not one (empty, or a reserved key)")
        if keyed and (msg.key() or b"") != event.run_id.encode():
            raise Poison(f"key {msg.key()!r} is not the run id {event.run_id}")
        return event

    def events(self, batch: Iterable[Message], *, keyed: bool = True) -> Iterator[tuple[Message, Event]]:
        """Each usable record of `batch` with its event; the rest are parked."""
        for msg in batch:
            if self.consume_error(msg):
                continue
            try:
                yield msg, self.decode(msg, keyed=keyed)
            except Poison as exc:
                self.park(msg, str(exc))

    def consume_error(self, msg: Message) -> bool:
        """True (and logged) when `msg` is an error event rather than a record; `ClientFailed`
        when the error leaves the consumer unusable (e.g. fenced: another member took its
        static identity), so the process ends and its process manager starts a fresh one."""
        err = msg.error()
        if err is None:
            return False
        if err.fatal() or err.code() == KafkaError._FATAL:
            raise ClientFailed(f"{self.service}: the consumer failed for good: {err}")
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consume error: %s", self.service, err)
        return True

    def park(self, msg: Message, reason: str) -> None:
        """Dead-letter `msg` with why and where it came from (or count it, when rebuilding)."""
        self.parked[reason.split(":")[0][:60]] += 1
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        if self.dead_letters is None:
            log.warning("%s: skipped %s: %s", self.service, where, reason)
            return
        log.warning("%s: dead-letter %s: %s", self.service, where, reason)
        DEAD_LETTERS.labels(self.service, reason_class(reason)).inc()
        headers: HeaderList = [
            ("dlq.reason", reason.encode()[:4000]), ("dlq.service", self.service.encode()),
            ("dlq.topic", (msg.topic() or "").encode()),
            ("dlq.partition", str(msg.partition()).encode()),
            ("dlq.offset", str(msg.offset()).encode()),
            *[(k, v) for k, v in header_pairs(msg.headers()) if not k.startswith("dlq.")],
        ]
        self.dead_letters.produce(self.settings.deadletter_topic, key=msg.key(), value=msg.value(),
                                  headers=headers)

    def fold_error(self, msg: Message, exc: FoldError) -> None:
        self.park(msg, f"not foldable: {exc}")


def commit(source: Consumer) -> None:
    """Send the commit of the consumed positions and go on (its outcome is logged by the
    consumer's `on_commit`). Only called once what the records led to is delivered or stored, so
    a commit that is lost costs a repeated answer (workers, which the orchestrator drops) or
    nothing (the sink resumes after what its table holds); and it never blocks the loop on a
    coordinator that is loading or moving."""
    try:
        source.commit(asynchronous=True)
    except KafkaException as exc:
        err = exc.args[0]
        if not (isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET):
            log.warning("commit not sent (%s); the records will be delivered again", err)


def end_offsets(reader: Consumer, topic: str, partitions: Iterable[int], *,
                timeout_s: float) -> dict[int, tuple[int, int]]:
    """(low, high) watermarks of each partition; `LogUnavailable` if the broker does not say."""
    out = {}
    try:
        for p in partitions:
            out[p] = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
    except KafkaException as exc:
        raise LogUnavailable(f"{topic} did not answer within {timeout_s:g} s; try again "
                             f"({exc.args[0]})") from None
    return out


def read_partitions(settings: Settings, topic: str, starts: Mapping[int, int], *,
                    stops: Mapping[int, int] | None = None, timeout_s: float = 10.0,
                    reader: Consumer | None = None, tail: bool = False) -> Iterator[Message]:
    """The records (committed ones only) of each partition in `starts`, from its start offset
    up to its stop offset (exclusive; default: its end when the read begins), in offset order
    per partition.

    timeout_s: the longest wait for the broker to answer at all; past it `LogUnavailable`.
    reader: a consumer to reuse (assigned here, unassigned after); otherwise one is made.
    tail: a short read to the end of what is committed, ended by the partition's end alone
    (no watermark request first: one round trip less for a run read).
    """
    own = reader is None
    if reader is None:
        reader = consumer(settings, None, **READER_CONFIG)
    try:
        todo: dict[int, int] = {}
        if tail and stops is None:
            todo = dict.fromkeys(starts, _PAST_ANY_END)
            begin = dict(starts)
        else:
            marks = end_offsets(reader, topic, starts, timeout_s=timeout_s)
            begin = {p: max(start, marks[p][0]) for p, start in starts.items()}
            for p in starts:
                high = marks[p][1]
                stop = min(high, stops[p]) if stops and p in stops else high
                if begin[p] < stop:
                    todo[p] = stop
        if not todo:
            return
        reader.assign([TopicPartition(topic, p, begin[p]) for p in todo])
        last_heard = time.monotonic()
        while todo:
            if time.monotonic() - last_heard > timeout_s:
                raise LogUnavailable(f"{topic} at {settings.bootstrap_servers} did not answer "
                                     f"within {timeout_s:g} s; try again")
            for msg in next_batch(reader, max_messages=500, timeout_s=0.2):
                part, err = msg.partition(), msg.error()
                if part is None or part not in todo:
                    continue
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        del todo[part]  # transaction markers may end a partition before `stop`
                    elif err.code() not in _TRANSIENT:
                        raise LogUnavailable(f"{topic}[{part}]: {err}")
                    continue
                last_heard = time.monotonic()
                if (msg.offset() or 0) >= todo[part]:
                    del todo[part]
                    continue
                yield msg
                if (msg.offset() or 0) >= todo[part] - 1:
                    del todo[part]
    finally:
        if own:
            reader.close()
        else:
            reader.unassign()


def lag(source: Consumer, *, service: str | None = None) -> int | None:
    """Records in the assigned partitions past the consumer's position (from the watermarks
    the last fetches brought: no request to the broker); None before anything is known.
    service: also set its per-partition lag gauges."""
    parts = source.assignment()
    if not parts:
        return 0
    total, known = 0, False
    for tp in source.position(parts):
        _low, high = source.get_watermark_offsets(tp, cached=True)
        if high < 0 or tp.offset < 0:
            continue
        known = True
        # A transaction's commit marker takes an offset the consumer never sees: one is not work.
        behind = max(high - tp.offset - 1, 0)
        total += behind
        if service is not None:
            LAG.labels(service, tp.topic, str(tp.partition)).set(behind)
    return total if known else None


def serve(ctx: ServiceContext, step: Callable[[], None], *, recover: Callable[[Exception], None]) -> None:
    """Run a service's `step` until it is asked to stop. A client that failed for good ends the
    process (its process manager starts a fresh one); a log that does not answer is waited out
    and `recover` decides how to go on (read again from the last commit)."""
    while not ctx.stopping:
        ctx.beat()
        try:
            step()
        except ClientFailed as exc:
            ctx.log.error("%s; exiting", exc)
            raise SystemExit(1) from None
        except (KafkaException, LogUnavailable) as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                ctx.log.error("a Kafka client failed for good (%s); exiting", err)
                raise SystemExit(1) from None
            ctx.waiting("kafka", exc)
            recover(exc)
