"""The loop every worker runs: react to some event types of the log, answer on the inbox.

At-least-once: answers are flushed before the offsets are committed, so a crash re-delivers
and the worker answers again; the orchestrator drops an answer it has already applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, KafkaException

from schemas.codec import DecodeError
from schemas.events import Event
from streams.kafka import consumer, header, headers_for, make_codec, producer
from streams.service import ServiceContext

__all__ = ["run_worker", "Handler"]

Handler = Callable[[Event], Iterable[Event]]


def run_worker(ctx: ServiceContext, *, handles: frozenset[str], handle: Handler) -> None:
    """Consume `agentlog.events` as group `agentlog-<name>` until asked to stop."""
    settings = ctx.settings
    codec = make_codec(settings)
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    out = producer(settings, on_delivery=delivered)
    source = consumer(settings, f"agentlog-{ctx.name}")
    source.subscribe([settings.events_topic], on_assign=lambda *_: ctx.mark_ready())
    try:
        while not ctx.stopping:
            batch = source.consume(200, timeout=0.2)
            if not batch:
                continue
            for msg in batch:
                if msg.error():
                    ctx.log.warning("consume error: %s", msg.error())
                    continue
                # Filter on the header: events nobody here handles are never decoded.
                if header(msg.headers(), "event_type") not in handles:
                    continue
                try:
                    event = codec.decode(msg.value())
                except DecodeError as exc:
                    ctx.dead_letter(out, msg, f"undecodable: {exc}")
                    continue
                try:
                    answers = list(handle(event))
                except Exception as exc:  # one bad record must not stop the worker
                    ctx.log.exception("handler failed on %s seq %s", event.run_id, event.seq)
                    ctx.dead_letter(out, msg, f"handler failed: {exc!r}")
                    continue
                for a in answers:
                    out.produce(settings.inbox_topic, key=a.run_id, value=codec.encode(a),
                                headers=headers_for(a))
                out.poll(0)
            if out.flush(30) or failures:
                raise KafkaException(failures[0] if failures else "answers not delivered in 30 s")
            source.commit(asynchronous=False)
    finally:
        source.close()
        out.flush(10)
        ctx.close()
